"""One audit chain per deployment: other processes' records wait in the journal database for the chain's writer.

docs/audit-format.md ("One chain per deployment") decides that a deployment writes **one** chain with **one**
signing key, held by the process that owns the audit directory. A site worker (and any process configured with
``workers.audit: outbox``) therefore never opens an audit directory or a key: :class:`OutboxAudit` redacts and
stamps each record (its own event time ``event_ts``, ``site``, ``worker``, ``host``, ``pid``) and inserts it into
``audit_outbox`` — **in the same transaction as the journal transition it describes** (the journal binds the
session, :meth:`OutboxAudit.bound`), so a worker killed at any moment leaves the transition and its record
together or neither.

The writer drains them into the chain (:mod:`agent.audit.drain`: in order, once — even when a drain dies
between appending and deleting — and never into a second chain).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.audit.drain import (
    DRAIN_LOCK,
    AuditChainConflict,
    Drainer,
    DrainResult,
    drain,
    evidence_path,
    pending,
    settle,
)
from agent.audit.processors import RESERVED_FIELDS, EventDict, Redactor, add_context, utc_timestamp

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from agent.store import Store

# The writer's side lives in agent.audit.drain; its names are re-exported here, where both sides are described.
__all__ = ["DRAIN_LOCK", "AuditChainConflict", "DrainResult", "Drainer", "OutboxAudit", "drain", "pending", "settle"]


class OutboxAudit:
    """The audit sink of a process that does not own the chain: records go to ``audit_outbox``.

    Same ``record()`` contract as :class:`~agent.audit.AuditLog` (reserved fields refused, secrets redacted
    before anything leaves the process), but no ``seq``/``hash`` here: the writer chains them. ``listeners``
    exist for interface compatibility and are never called: notices are derived by the writer from the chain,
    the one place that sees every process's records (calling them here too would notify twice).
    """

    transactional = True
    key_fingerprint: str | None = None

    def __init__(self, store: Store, *, actor: str | None = None, site: str | None = None,
                 worker: str | None = None, known_secrets: tuple[str, ...] = (),
                 evidence_dir: Path | None = None) -> None:
        self.store = store
        self.evidence_dir = evidence_dir
        self.context = add_context(actor)
        self.redactor = Redactor(known_secrets)
        self.site, self.worker = site, worker
        self.listeners: list[Any] = []
        self._local = threading.local()

    def stamp(self, *, site: str | None = None, worker: str | None = None) -> None:
        """Name the site and worker on every later record (a worker learns its journal owner after start)."""
        self.site, self.worker = site or self.site, worker or self.worker

    @contextmanager
    def bound(self, session: Session) -> Iterator[None]:
        """Records made in this thread inside the block join ``session``'s transaction (the journal's)."""
        previous = getattr(self._local, "session", None)
        self._local.session = session
        try:
            yield
        finally:
            self._local.session = previous

    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Redact and stamp one record and queue it for the chain; returns it as queued."""
        from agent.store import AuditOutbox
        clash = RESERVED_FIELDS.intersection(fields) | ({"event_ts", "outbox_id"} & set(fields))
        if clash:
            raise TypeError(f"audit fields {sorted(clash)} are set by the log itself")
        event_dict: EventDict = {"event": event, **fields}
        event_dict = self.context(None, "record", event_dict)
        event_dict = self.redactor(None, "record", event_dict)
        if self.site is not None:
            event_dict.setdefault("site", self.site)
        if self.worker is not None:
            event_dict.setdefault("worker", self.worker)
        event_dict["event_ts"] = utc_timestamp()
        body = dict(event_dict)
        json.dumps(body)  # fail here, in the caller, on a value the chain could not encode
        incident = body.get("incident")
        row = AuditOutbox(incident=str(incident)[:40] if incident is not None else None, record=body,
                          attachment=self._attachment(body))
        session = getattr(self._local, "session", None)
        if session is not None:
            session.add(row)
            return body
        for delay in (0.2, 0.5, 1.0, None):
            try:
                with self.store.session() as s:
                    s.add(AuditOutbox(incident=row.incident, record=body, attachment=row.attachment))
                return body
            except Exception as exc:  # noqa: BLE001 - the database is away: retry, then say so on stderr
                if delay is None:
                    # Not bound to a journal transition (those fail with their transition and are retried with
                    # it): a worker's own diagnostics (sweep failed, dropped delivery) while the journal is away.
                    print(f"audit record NOT queued for the chain (journal database unreachable: "
                          f"{type(exc).__name__}): {json.dumps(body, sort_keys=True)}", file=sys.stderr, flush=True)
                    return body
                time.sleep(delay)
        return body  # pragma: no cover - the loop always returns

    def _attachment(self, body: dict[str, Any]) -> bytes | None:
        """The evidence file an ``evidence.stored`` record names (just written by agent.evidence), sent with it."""
        if body.get("event") != "evidence.stored" or self.evidence_dir is None:
            return None
        path = evidence_path(self.evidence_dir, body)
        return path.read_bytes() if path is not None and path.is_file() else None

    def add_known_secret(self, value: Any) -> None:
        self.redactor.add_known(value)

    def checkpoint(self) -> None:
        """No key here: the writer signs the chain."""

    def flush(self) -> None:
        """Queued records are committed to the journal database already."""

    def close(self) -> None:
        """Nothing to release (the store is the app's)."""

    @property
    def head(self) -> tuple[int, str]:
        return 0, ""
