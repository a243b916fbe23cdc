"""Group commit: the webhook's single database write, shared by every request that arrives meanwhile.

Why: an alert must be durable *before* the 202 answer, and one SQLite commit costs an fsync (≈3 ms here). One
writer thread takes everything queued since its last commit (up to ``batch`` requests) and writes it in one
transaction — new incidents first, then their intake rows, then the alerts (foreign keys) — then resolves each
request's future and hands the decisions to the dispatcher. Under load the cost of the fsync is shared; alone,
a request waits for exactly one commit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table

from agent.intake.bulk import BulkTable
from agent.intake.model import NormalizedAlert
from agent.intake.tables import IntakeIncident
from agent.store import Alert, Incident, Store

__all__ = ["AlertWriter", "Decision", "acknowledgement"]


@dataclass
class Decision:
    """What the request path decided for one normalised alert (persisted by the writer)."""

    alert_id: str
    alert: NormalizedAlert
    digest: str
    received_at: datetime
    disposition: str  # accepted | deduped | no-match | not-actionable | resolved | invalid
    incident: str | None = None
    new_incident: bool = False
    rule: Any = None  # agent.intake.rules.Rule
    target: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0  # time.monotonic() at arrival (latency metrics)
    #: events already in the audit log for this incident (a decision re-queued after a crash): not written twice
    recorded: frozenset[str] = frozenset()

    def answer(self) -> dict[str, Any]:
        out = {"alert_id": self.alert_id, "incident": self.incident, "disposition": self.disposition}
        if self.alert.invalid:
            out["error"] = self.alert.invalid
        return out


def acknowledgement(decisions: list[Decision]) -> dict[str, Any]:
    """The 202 answer: the first alert's result at the top (single-alert senders read it), every alert's below.

    A batch (Alertmanager group, Elastic documents, Suricata lines) is answered 2xx even when some of its alerts
    are invalid: they are recorded with disposition ``invalid`` and their ``error``, the valid ones are stored.
    """
    answers = [d.answer() for d in decisions]
    head = answers[0] if answers else {"alert_id": None, "incident": None, "disposition": "no-alert"}
    invalid = sum(1 for a in answers if a["disposition"] == "invalid")
    return {**head, "alerts": answers, "stored": len(answers), "invalid": invalid}


_STOP = object()


def _discovered(event: datetime | None, received: datetime) -> datetime:
    """The incident's discovery time: the sender's event time when it gives one that is not in the future."""
    return event if event is not None and event <= received else received


def table_of(model: Any) -> Table:
    """The Core table of a mapped class (typed for mypy)."""
    return cast(Table, model.__table__)


class AlertWriter:
    def __init__(self, store: Store, deliver: Callable[[list[Decision]], None], *, batch: int = 512) -> None:
        self.store, self.deliver, self.batch = store, deliver, batch
        dialect = store.engine.dialect
        #: multi-row statements per table (also used by the dispatcher's bookkeeping, see submit_update)
        self.bulk = {m.__tablename__: BulkTable(table_of(m), dialect) for m in (Incident, IntakeIncident, Alert)}
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="alert-writer", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def submit(self, decisions: list[Decision]) -> Future[None]:
        fut: Future[None] = Future()
        self._queue.put((decisions, fut))
        return fut

    def submit_update(self, update: Callable[[Any], None]) -> Future[None]:
        """Run ``update(connection)`` in the writer's next transaction (the dispatcher's bookkeeping).

        Why through the writer: SQLite has one write lock; a second writing thread would make the webhook's
        commits wait behind it. Here the bookkeeping shares the webhook's group commit instead.
        """
        fut: Future[None] = Future()
        if self._stopped:  # after shutdown (late callbacks of running plans): write directly
            with self.store.engine.begin() as conn:
                update(conn)
            fut.set_result(None)
            return fut
        self._queue.put((update, fut))
        return fut

    def depth(self) -> int:
        """Requests and bookkeeping updates waiting for the next group commit."""
        return self._queue.qsize()

    def stop(self, timeout: float = 10.0) -> None:
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._stopped = True

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            items = [item]
            stop = False
            while len(items) < self.batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                items.append(nxt)
            self._commit(items)
            if stop:
                return

    def _commit(self, items: list[tuple[Any, Future[None]]]) -> None:
        decisions = [d for ds, _ in items if isinstance(ds, list) for d in ds]
        updates = [fn for fn, _ in items if not isinstance(fn, list)]
        try:
            self.write(decisions, updates)
        except Exception as exc:  # noqa: BLE001 - retried request by request below
            if len(items) == 1:
                items[0][1].set_exception(exc)
                return
            for one in items:  # one bad request must not fail the others sharing its transaction
                self._commit([one])
            return
        for _, fut in items:
            fut.set_result(None)
        self.deliver(decisions)

    def write(self, decisions: list[Decision], updates: list[Callable[[Any], None]] = ()) -> None:  # type: ignore[assignment]
        incidents, intake, alerts = [], [], []
        for d in decisions:
            a = d.alert
            if d.new_incident:
                title = f"{d.rule.runbook} on {d.target}: {a.source} {a.rule_id} {a.title}".strip()[:300]
                incidents.append({"id": d.incident, "title": title, "status": "open",
                                  "trigger": f"alert:{a.source}"[:40],
                                  "reason": f"alert {d.alert_id} ({a.source} rule {a.rule_id}, severity "
                                            f"{a.severity}) matched rule {d.rule.name}",
                                  "requested_by": f"alert:{a.source}"[:200],
                                  "discovered_at": _discovered(a.event_time, d.received_at),
                                  "created_at": d.received_at, "contained_at": None})
                intake.append({"incident_id": d.incident, "runbook": d.rule.runbook, "target": d.target,
                               "rule": d.rule.name, "policy": d.rule.policy, "alert_id": d.alert_id,
                               "opened_at": d.received_at, "decision": "queued", "detail": ""})
            alerts.append({"id": d.alert_id, "source": a.source, "rule_id": a.rule_id, "severity": a.severity,
                           "host": a.host, "user": a.user, "source_ip": a.source_ip, "digest": d.digest,
                           "raw": d.raw, "received_at": d.received_at, "incident_id": d.incident,
                           "disposition": d.disposition, "event_time": a.event_time,
                           "rule_name": a.rule_name[:300] or None})
        with self.store.engine.begin() as conn:  # a plain connection: no ORM session is needed here
            self.bulk["incidents"].insert(conn, incidents)  # parents first: foreign keys
            self.bulk["intake_incidents"].insert(conn, intake)
            self.bulk["alerts"].insert(conn, alerts)
            for fn in updates:
                fn(conn)
