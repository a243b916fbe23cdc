"""Reads for targets at worker sites, run by those sites' workers: the journal's side and the requester's side.

Everything a site target needs goes through its site's workers, not only the change itself: the central CLI or
daemon holds no credentials for those targets and may not even reach them. So ``status --verify``, the daemon's
drift re-verification (and, with ``drift_policy: reapply``, the re-apply) and a plan's read-only resolve step
(docs/architecture.md, decision 1) are journaled as a :class:`agent.store.SiteRead` row and the row id is sent
to the site's queue (``agent.site_read``); a worker of the site claims it and writes its result; the requester
waits on the journal, as :mod:`agent.workers.dispatch` does for actions.

Why the same lease as an action: delivery is at-least-once. A read is harmless to repeat, but its result — and
the proof it journals on the action (agent/proof.py) — must be written once and name the worker that read it;
a re-apply must happen at most once. So a worker claims the row (compare-and-swap: ``owner``, ``lease_until``,
database time), a redelivery of a running or finished read is dropped, a read whose worker died (lease expired)
is taken over, and :func:`finish` is fenced (only the lease holder, only once) in the same transaction as the
proof. A read nobody took within its time is given up here (``failed``, "no worker of site S took it"), so a
late delivery finds it settled and drops it: nothing is read or changed behind the requester's back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from agent.store import utcnow
from agent.workers.models import SiteRead
from agent.workers.config import WorkersConfig, queue_for
from agent.workers.lease import Claim, ClaimResult, db_now

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from agent.config import Settings
    from agent.store import Store

__all__ = ["KINDS", "READ_TASK", "ReadOutcome", "SiteReads", "claim_read", "finish"]

READ_TASK = "agent.site_read"  # (read_id): the worker reads everything else from the journal row
KINDS = ("verify", "reapply", "resolve", "identify", "pin", "settle")
_WHAT = {"verify": "read-back", "reapply": "drift re-apply", "resolve": "resolve step", "identify": "account lookup",
         "pin": "allow-list name lookup", "settle": "in-doubt re-check"}
SETTLED = ("done", "failed")


@dataclass(frozen=True)
class ReadOutcome:
    """A settled read as the requester sees it: ``ok`` with the worker's ``result``, or ``error`` (timeout, no
    worker, the worker's own failure) — ``worker`` is the journal owner that read it (None: nobody did)."""

    id: str
    site: str
    ok: bool
    result: dict[str, Any]
    error: str = ""
    worker: str | None = None
    at: Any = None


def claim_read(store: Store, read_id: str, owner: str, lease: float, *, site: str) -> Claim:
    """Claim a read for ``owner`` (compare-and-swap, as :func:`agent.workers.lease.claim` for an action):
    FRESH (queued), TAKEOVER (its worker's lease expired), HELD, SETTLED, MISSING or FOREIGN (another site)."""
    with store.session() as s:
        row = s.get(SiteRead, read_id)
        if row is None:
            return Claim(ClaimResult.MISSING)
        if row.site != site:
            return Claim(ClaimResult.FOREIGN, None, row.owner)
        if row.state in SETTLED:
            return Claim(ClaimResult.SETTLED, None, row.owner)
        now = db_now(s)
        if row.lease_until is not None and row.lease_until > now:
            return Claim(ClaimResult.HELD, None, row.owner)
        fresh, previous = row.state == "queued", row.owner
        cond = [SiteRead.id == read_id, SiteRead.state == row.state, SiteRead.owner == row.owner,
                SiteRead.lease_until.is_(None) if row.lease_until is None else SiteRead.lease_until == row.lease_until]
        result = s.execute(update(SiteRead).where(*cond).values(
            state="running", owner=owner, lease_until=now + timedelta(seconds=lease)))
        if getattr(result, "rowcount", 0) != 1:
            return Claim(ClaimResult.LOST, None, previous)
    return Claim(ClaimResult.FRESH if fresh else ClaimResult.TAKEOVER, None, previous)


def finish(s: Session, read_id: str, owner: str, *, result: dict[str, Any] | None = None, error: str | None = None
           ) -> bool:
    """Settle a running read held by ``owner`` — once: False (nothing written) when it is no longer ours. Call it
    in the transaction that journals the read's proof, so the two are written together or not at all."""
    row = s.get(SiteRead, read_id, with_for_update=s.get_bind().dialect.name == "postgresql")
    if row is None or row.state != "running" or row.owner != owner:
        return False
    row.state = "failed" if error is not None else "done"
    row.result, row.error, row.done_at, row.lease_until = result or {}, error, db_now(s), None
    return True


class SiteReads:
    """The requester's side: journal reads, send them to their sites' queues, wait for the journal.

    ``claim_within``: seconds a site's worker has to take a read (then it is given up and reported, naming the
    site); ``finish_within``: seconds a taken read may run (its worker connects to the target: the connect
    timeout, retries) before the requester stops waiting and says which worker still has it.
    """

    def __init__(self, store: Store, cfg: WorkersConfig, owner: str, *, claim_within: float, finish_within: float,
                 tick: float = 0.1, cancel: threading.Event | None = None) -> None:
        self.store, self.cfg, self.owner = store, cfg, owner
        self.cancel = cancel or threading.Event()  # the asking process is stopping: stop waiting
        self.claim_within, self.finish_within, self.tick = claim_within, finish_within, tick
        self._celery: Any = None

    def request(self, site: str, kind: str, *, target: str, target_kind: str = "host", address: str = "",
                action: str = "", args: dict[str, Any] | None = None, action_id: str | None = None,
                cause: str = "") -> str:
        """Journal one read and queue it for ``site``'s workers; its id (a publish that failed leaves it failed)."""
        import json
        assert kind in KINDS, kind
        row = SiteRead(site=site, kind=kind, action_id=action_id, target=target, target_kind=target_kind,
                       address=address, action=action, args=json.loads(json.dumps(args or {}, default=str)),
                       cause=cause, requested_by=self.owner, state="queued")
        with self.store.session() as s:
            s.add(row)
        try:
            self._send(site, row.id)
        except Exception as exc:  # noqa: BLE001 - reported as this read's failure, naming the site
            self._give_up(row.id, f"not queued for site {site}: the broker could not be reached "
                                  f"({type(exc).__name__}: {exc}); nothing was read")
        return row.id  # journaled (site_reads); audited by the worker that reads it, not here: counted once

    def run(self, site: str, kind: str, **fields: Any) -> ReadOutcome:
        """One read: request it and wait for its outcome."""
        return self.wait([self.request(site, kind, **fields)])[0]

    def wait(self, ids: Sequence[str]) -> list[ReadOutcome]:
        """Wait for every read in ``ids`` (one query per tick for all of them); in the order given."""
        started = time.monotonic()
        done: dict[str, ReadOutcome] = {}
        while True:
            with self.store.session() as s:
                rows = {r.id: r for r in s.scalars(select(SiteRead).where(SiteRead.id.in_(
                    [i for i in ids if i not in done])))}
                for r in rows.values():
                    s.expunge(r)
            now = time.monotonic() - started
            for read_id, row in rows.items():
                if row.state in SETTLED:
                    done[read_id] = _outcome(row)
                elif row.state == "queued" and now > self.claim_within:
                    message = (f"no worker of site {row.site} took the {_WHAT[row.kind]} of {row.target} within "
                               f"{self.claim_within:g}s — is `agent worker --site {row.site}` running and connected "
                               "to the broker? Nothing was read or changed")
                    if self._give_up(read_id, message, state="queued"):
                        done[read_id] = ReadOutcome(read_id, row.site, False, {}, message)
                elif row.state == "running" and now > self.claim_within + self.finish_within:
                    done[read_id] = ReadOutcome(
                        read_id, row.site, False, {},
                        f"the worker of site {row.site} ({row.owner}) has not finished the {_WHAT[row.kind]} of "
                        f"{row.target} within {self.claim_within + self.finish_within:g}s; its result will be "
                        "journaled when it does", row.owner)
            if len(done) == len(ids):
                return [done[i] for i in ids]
            if self.cancel.wait(self.tick):
                for read_id in ids:
                    if read_id not in done:
                        message = "not waited for: this process is stopping (a worker may still read it)"
                        if self._give_up(read_id, message + "; given up before any worker took it"):
                            message = "given up before any worker of the site took it: this process is stopping"
                        done[read_id] = ReadOutcome(read_id, "", False, {}, message)
                return [done[i] for i in ids]

    def _give_up(self, read_id: str, message: str, state: str | None = None) -> bool:
        """Settle a read nobody took (compare-and-swap from ``queued``): a late delivery then drops it."""
        with self.store.session() as s:
            cond = [SiteRead.id == read_id, SiteRead.state == (state or "queued")]
            result = s.execute(update(SiteRead).where(*cond).values(state="failed", error=message,
                                                                    done_at=utcnow()))
            return getattr(result, "rowcount", 0) == 1

    def _send(self, site: str, read_id: str) -> None:
        if self._celery is None:
            from agent.workers.celery_app import make_celery
            self._celery = make_celery(self.cfg)
        queue = queue_for(site)
        self._celery.send_task(READ_TASK, args=[read_id], queue=queue, routing_key=queue, retry=True,
                               retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5,
                                             "interval_max": 1})

    def close(self) -> None:
        app, self._celery = self._celery, None
        if app is not None:
            app.close()


def _outcome(row: SiteRead) -> ReadOutcome:
    if row.state == "done":
        return ReadOutcome(row.id, row.site, True, dict(row.result or {}), "", row.owner or None, row.done_at)
    return ReadOutcome(row.id, row.site, False, dict(row.result or {}), str(row.error or "failed"),
                       row.owner or None, row.done_at)


def pins_from_site(settings: Settings, store: Store, host: str, site: str, address: str) -> dict[str, list[str]]:
    """The allow-list DNS names of ``host`` resolved by a worker of its site (agent.reach.resolve_names there);
    refuses the plan (InputError, nothing journaled or sent) when the site does not answer or a name does not
    resolve there."""
    from agent.errors import InputError
    from agent.runctx import current_owner
    reads = for_process(settings, store, str(current_owner()))
    try:
        got = reads.run(site, "pin", target=host, address=address, cause="plan")
    finally:
        reads.close()
    pins = got.result.get("pins")
    if not got.ok or not isinstance(pins, dict):
        raise InputError(f"{host}: the allow-list's DNS names could not be pinned ({got.error}); nothing was "
                         "journaled or sent")
    return {str(k): [str(a) for a in v] for k, v in pins.items()}


def for_process(settings: Settings, store: Store, owner: str, cancel: threading.Event | None = None) -> SiteReads:
    """A requester for this configuration: a worker has the lease plus a connect timeout to take a read, then a
    connect and a command timeout per attempt (and one lease of slack) to finish it."""
    cfg = settings.workers
    assert cfg is not None
    per_try = settings.connect_timeout + settings.command_timeout
    return SiteReads(store, cfg, owner, claim_within=cfg.lease + settings.connect_timeout,
                     finish_within=per_try * max(1, settings.retries) + cfg.lease, cancel=cancel)
