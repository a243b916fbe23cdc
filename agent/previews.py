"""Exact dry runs: the read-only resolve step for previews (docs/architecture.md, decision 1).

A device's rule order, existing objects and pending commits decide which lines a block sends (Junos ``insert …
before term``, FortiGate ``edit <id>`` / ``move``, MikroTik ``place-before=0``, IOS ACL creation), so a preview
computed without looking is a guess. For a dry run, after every input check and guard, each planned action whose
connector offers ``resolve(session, action, args)`` gets its target read (show commands only, never a write) and
its preview recomputed from those facts: the preview is then exactly what ``apply`` would send to the device as
it is now. ``--offline`` skips this and keeps the conditional offline preview; a target that cannot be read keeps
it too, and the plan says so.

A real run does the same read before it shows the plan it asks to confirm (``pin=True``, for connectors that
declare ``checks_planned_lines``), and pins the lines shown into the action's arguments (``planned_lines``): at
apply the connector re-reads the device and refuses that item, nothing sent, when the lines it would now send
differ — the device changed since the plan was shown (someone blocked the address meanwhile, the ACL changed).
Only an action that is the sole one on its target is pinned (a second action on the same device would
legitimately change it first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.errors import AgentError
from connectors.errors import ConnectorError

if TYPE_CHECKING:
    from agent.plan import Plan, PlannedAction, Planner

__all__ = ["exact_previews"]


def exact_previews(planner: Planner, plan: Plan, pin: bool = False) -> None:
    """Replace each resolvable action's preview by the exact lines for the target's current state; with ``pin``
    (a real run) only for connectors that check them at apply, and record them as ``planned_lines``."""
    per_target: dict[str, int] = {}
    for pa in plan.actions:
        per_target[pa.target.name] = per_target.get(pa.target.name, 0) + 1
    here: list[PlannedAction] = []
    at_sites: list[PlannedAction] = []
    cfg = planner.settings.workers
    for pa in plan.actions:
        if pa.undo_of:
            continue
        conn: Any = planner.registry.get(pa.target.connector)
        if getattr(conn, "resolve", None) is None:
            continue
        if pin and not (getattr(conn, "checks_planned_lines", False) and per_target[pa.target.name] == 1):
            continue
        if cfg is not None and cfg.routes(pa.entry.site):
            at_sites.append(pa)  # read by a worker of its site: only it holds the credentials and reaches it
        elif pa.entry.credentials is not None:
            here.append(pa)
    facts_of = _facts_from_sites(planner, plan, at_sites, pin) if at_sites else {}
    for pa in here:
        conn = planner.registry.get(pa.target.connector)
        try:
            creds = pa.entry.credentials.resolve()  # type: ignore[union-attr]  # filtered above
            session = conn.open(pa.target, creds, planner.ctx)
            try:
                facts_of[id(pa)] = conn.resolve(session, pa.action, pa.args)
            finally:
                session.close()
        except (ConnectorError, AgentError) as exc:
            plan.notes.append(f"{pa.target.name}: could not read the device for an exact preview ({exc}); "
                              "the lines shown are conditional")
    for pa in [*here, *at_sites]:
        if id(pa) not in facts_of:
            continue
        conn = planner.registry.get(pa.target.connector)
        try:
            lines = conn.preview(pa.target, pa.action, pa.args, planner.ctx, facts=facts_of[id(pa)])
        except (ConnectorError, AgentError) as exc:
            plan.notes.append(f"{pa.target.name}: could not compute the exact preview ({exc}); "
                              "the lines shown are conditional")
            continue
        if pin:
            pa.args["planned_lines"] = list(lines)
        pa.preview = lines or ["(nothing to send: the device already is in the requested state)"]


def _facts_from_sites(planner: Planner, plan: Plan, pas: list[PlannedAction], pin: bool) -> dict[int, Any]:
    """The resolve step of targets at worker sites, run by those sites' workers (agent/workers/reads.py), all
    asked at once. A dry run notes a site that did not answer and shows the conditional lines; a real run
    refuses the whole command before any intent is journaled — it would otherwise queue changes for a site
    whose workers are away, with lines nobody saw — and says which site, and that nothing was changed."""
    from agent.runctx import current_owner
    from agent.workers.reads import for_process
    assert planner.store is not None
    reads = for_process(planner.settings, planner.store, str(current_owner()))
    try:
        ids = [reads.request(str(pa.entry.site), "resolve", target=pa.target.name, target_kind=pa.target.kind,
                             address=pa.target.address, action=pa.action, args=pa.args, cause="plan")
               for pa in pas]
        outcomes = reads.wait(ids)
    finally:
        reads.close()
    facts: dict[int, Any] = {}
    failed = []
    for pa, got in zip(pas, outcomes, strict=True):
        if got.ok:
            facts[id(pa)] = got.result.get("facts") or {}
            continue
        failed.append(f"{pa.target.name}: {got.error}")
        plan.notes.append(f"{pa.target.name}: could not read the device for an exact preview ({got.error}); "
                          "the lines shown are conditional")
    if failed and pin:
        raise AgentError("refused: the resolve step of " + "; ".join(failed) + " — the plan cannot show the "
                         "exact lines, so nothing was journaled or sent; start the site's worker, or run with "
                         "--dry-run --offline to see the conditional plan")
    return facts


