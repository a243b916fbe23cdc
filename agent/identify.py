"""The planner's read-only resolve step: account names become the directory's stable id before the plan is shown.

Why: ``disable-account jdoe`` then ``enable-account JDOE`` (or ``jdoe@lab.test``, ``LAB\\jdoe``, its DN) must undo
it, and a batch naming one account twice must change it once. Names are matched by the directory, not by us: one
read-only search per directory (the connector's ``identify``) maps every name to its objectGUID, and items are
journaled as ``guid:<objectGUID>``. It runs after every input check and guard of the plan (never on input that
was refused), and sends nothing that changes the directory. A directory that cannot be asked leaves the names as
they are (``name:<casefolded>``; the snapshot later records the GUID) and says so in the plan's notes.

A directory at a worker site is asked by a worker of that site. When no worker takes the lookup, a real run is
refused before anything is journaled (as the router's resolve step is, agent/previews.py): the names could not be
checked against protected accounts known only by SID, DN or alias, and changes queued for a site nobody serves
would apply whenever a worker comes back, long after the operator moved on. A dry run notes it and goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError, GuardRefused
from agent.items import guid_key
from connectors.errors import ConnectorError

if TYPE_CHECKING:
    from agent.inventory import HostEntry
    from agent.plan import Plan, Planner

__all__ = ["identify_accounts"]


class _NoSiteWorker(AgentError):
    """No worker of the directory's site took the lookup: nothing was read, and nothing could be sent there."""


def identify_accounts(planner: Planner, plan: Plan, undo_requests: Iterable[Any]) -> None:
    """Re-key the plan's account items, and the undo requests' account subjects, by objectGUID."""
    wanted: dict[str, tuple[HostEntry, str, set[str]]] = {}
    for pa in plan.actions:
        for item in pa.items:
            if item.kind == "account":
                wanted.setdefault(pa.entry.name, (pa.entry, pa.target.address, set()))[2].add(item.value)
    requests = [r for r in undo_requests if r.names]
    for req in requests:
        wanted.setdefault(req.entry.name, (req.entry, req.address, set()))[2].update(req.names)
    found: dict[tuple[str, str], str] = {}
    for name, (entry, address, names) in wanted.items():
        for value, key in _lookup(planner, plan, entry, address, sorted(names)).items():
            found[(name, value)] = key
    if not found:
        return
    for pa in plan.actions:
        pa.items = [replace(i, canonical=found[(pa.entry.name, i.value)], aliases=(i.canonical, *i.aliases))
                    if i.kind == "account" and (pa.entry.name, i.value) in found else i for i in pa.items]
    for req in requests:
        req.identified({v: k for (d, v), k in found.items() if d == req.entry.name})


def _lookup(planner: Planner, plan: Plan, entry: HostEntry, address: str, names: list[str]) -> dict[str, str]:
    conn = planner.registry.get(entry.connector)
    identify = getattr(conn, "identify", None)
    cfg = planner.settings.workers
    at_site = cfg is not None and cfg.routes(entry.site) and planner.store is not None
    if identify is None or (entry.credentials is None and not at_site) or not names:
        return {}
    target = entry.target(address)
    try:
        if at_site:  # the directory's site worker looks them up: it holds the credentials (agent/workers/reads.py)
            identities = _identify_at_site(planner, entry, target.address, names)
        else:
            assert entry.credentials is not None
            creds = entry.credentials.resolve()
            session = conn.open(target, creds, planner.ctx)
            try:
                identities = identify(session, names)
            finally:
                session.close()
    except (ConnectorError, AgentError) as exc:
        if isinstance(exc, _NoSiteWorker) and not getattr(planner, "dry_run", False):
            raise AgentError(f"refused: {exc}. The accounts {', '.join(map(repr, names))} could not be checked "
                             "against the protected ones (by SID, DN or alias) and no worker would carry the "
                             f"change, so nothing was journaled or sent; start `agent worker --site {entry.site}` "
                             "(--dry-run shows the plan without it)") from exc
        plan.notes.append(f"{entry.name}: could not look the accounts up before planning ({exc}); they are "
                          "matched by name until the directory answers")
        return {}
    protected = [f"{name!r} ({ident.get('message') or 'protected'})" for name, ident in
                 zip(names, identities, strict=True) if ident and ident.get("problem") == "protected_account"]
    if protected:  # resolved to a protected account (by SID/DN/alias): the whole command is refused, nothing sent
        raise GuardRefused(f"refused: {', '.join(protected)} on {entry.name} resolve(s) to a protected account; "
                           "nothing was changed")
    return {name: guid_key(str(ident["objectGUID"])) for name, ident in zip(names, identities, strict=True)
            if ident and ident.get("objectGUID")}


def _identify_at_site(planner: Planner, entry: HostEntry, address: str, names: list[str]) -> list[Any]:
    from agent.runctx import current_owner
    from agent.workers.reads import for_process
    assert planner.store is not None
    reads = for_process(planner.settings, planner.store, str(current_owner()))
    try:
        got = reads.run(str(entry.site), "identify", target=entry.name, target_kind="account", address=address,
                        args={"names": names}, cause="plan")
    finally:
        reads.close()
    if not got.ok and got.worker is None:  # given up before any worker took it (or never queued)
        raise _NoSiteWorker(got.error)
    identities = got.result.get("identities")
    if not got.ok or not isinstance(identities, list) or len(identities) != len(names):
        raise AgentError(got.error or f"the {entry.site} worker's answer does not match the names asked")
    return identities
