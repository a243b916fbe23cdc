"""The chain writer's side of one audit chain per deployment: append what site workers queued, once, in order.

:func:`drain` appends waiting ``audit_outbox`` rows (agent.audit.outbox) to this chain in id order under
a PostgreSQL advisory lock (one drain at a time, deployment-wide) and deletes them. The file and the database
cannot commit together, so a drain first **marks** its batch with the chain's seq (``drain_from``), then appends —
each record carrying its ``outbox_id`` — and fsyncs, then deletes. A drain that died between append and delete
leaves marked rows; the next drain looks for their ``outbox_id`` in the chain after ``drain_from``: found →
deleted, not appended again; missing (died before the append) → appended. Nothing lost, nothing doubled.

The chain is registered in ``audit_chain`` by the hash of its first record: a writer whose audit directory holds
another chain (two daemons each with their own directory) refuses to drain, instead of splitting the
deployment's records over two chains. An evidence file queued with its ``evidence.stored`` record is written into
this core's evidence folder (and the incident's manifest) before the record is chained.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.audit.processors import RESERVED_FIELDS
from agent.audit.segments import list_segments
from agent.errors import AgentError
from agent.failpoints import failpoint

if TYPE_CHECKING:
    from agent.audit.writer import AuditLog
    from agent.store import Store

__all__ = ["DRAIN_LOCK", "AuditChainConflict", "DrainResult", "Drainer", "drain", "evidence_path", "pending",
           "settle"]

DRAIN_LOCK = 7781002  # PostgreSQL advisory lock key of the chain's drain (7781001 is the journal's seq)
CHAIN = "deployment"
BATCH = 500
_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")  # as agent.evidence names folders and files
_log = logging.getLogger(__name__)


class AuditChainConflict(AgentError):
    """This writer's audit directory is not the deployment's chain: draining into it would split the records."""



@dataclass
class DrainResult:
    appended: int = 0  # records chained now
    recovered: int = 0  # rows a dead drain had chained already: deleted, not chained again
    busy: bool = False  # another process was draining (it holds the deployment's drain lock)


def pending(store: Store, *, up_to: int | None = None, incident: str | None = None) -> int:
    """How many records wait in the outbox (with id <= ``up_to``; of ``incident``)."""
    from sqlalchemy import func, select

    from agent.store import AuditOutbox
    q = select(func.count()).select_from(AuditOutbox)
    if up_to is not None:
        q = q.where(AuditOutbox.id <= up_to)
    if incident is not None:
        q = q.where(AuditOutbox.incident == incident)
    with store.session() as s:
        return int(s.scalar(q) or 0)


def _max_id(store: Store) -> int:
    from sqlalchemy import func, select

    from agent.store import AuditOutbox
    with store.session() as s:
        return int(s.scalar(select(func.max(AuditOutbox.id))) or 0)


_PROCESS_LOCK = threading.Lock()
_DRAINERS: weakref.WeakKeyDictionary[Any, Drainer] = weakref.WeakKeyDictionary()
_CONFIRMED: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


@contextmanager
def _drain_lock(store: Store) -> Iterator[bool]:
    """One drain at a time: in this process (a lock) and in the deployment (a session advisory lock on its own
    connection, released when the drain ends or its process dies). Yields False when another holds it."""
    if not _PROCESS_LOCK.acquire(timeout=30):
        yield False
        return
    try:
        if store.engine.dialect.name != "postgresql":
            yield True  # one machine: the audit directory's flock already serialises every writer
            return
        from sqlalchemy import text
        conn = store.engine.connect()
        try:
            got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": DRAIN_LOCK}))
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": DRAIN_LOCK})
                    conn.commit()
        finally:
            conn.close()
    finally:
        _PROCESS_LOCK.release()


def evidence_path(evidence_dir: Path, record: dict[str, Any]) -> Path | None:
    """``<evidence_dir>/<incident>/<file>`` of an ``evidence.stored`` record, or None when its names could leave
    the evidence folder (a queued record is data from a site, not trusted with paths): every component must be
    a name agent.evidence makes."""
    incident, file = record.get("incident"), record.get("file")
    if not isinstance(incident, str) or not isinstance(file, str):
        return None
    parts = [incident, *file.split("/")]
    if len(parts) < 2 or not all(_COMPONENT.fullmatch(p) and ".." not in p for p in parts):
        return None
    return Path(evidence_dir).joinpath(*parts)


def _store_attachment(evidence_dir: Path, record: dict[str, Any], data: bytes) -> None:
    """Put a site's evidence file where this core's evidence lives (and in the incident's manifest) before its
    record is chained; a file already there (a drain that died after writing it) is kept when it matches."""
    import hashlib

    from agent.evidence import EvidenceItem, _append_manifest, _fsync_dir, write_durably
    path = evidence_path(evidence_dir, record)
    digest = hashlib.sha256(data).hexdigest()
    if path is None or digest != record.get("sha256"):
        _log.warning("evidence %r of %s not stored: unsafe name or SHA-256 differs from its record",
                     record.get("file"), record.get("incident"))
        return
    if path.exists():
        return  # written by a drain that died before deleting the row (same name, same record)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    tmp = path.with_name(path.name + ".part")
    write_durably(tmp, data, os.O_TRUNC)
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    extra = {"collected_at": "", "collected_by": "", "source": ""}
    extra |= {k: str(record[k]) for k in ("collected_at", "collected_by", "source", "status", "error",
                                         "collector_host") if isinstance(record.get(k), str)}
    item = EvidenceItem(incident=str(record["incident"]), target=str(record.get("target") or ""),
                        name=str(record.get("original_name") or path.name), path=str(record["file"]), sha256=digest,
                        size=len(data), **extra)
    _append_manifest(Path(evidence_dir) / str(record["incident"]), [item])


def drain(store: Store, log: AuditLog, *, batch: int = BATCH, evidence_dir: Path | None = None) -> DrainResult:
    """Append every waiting record to ``log`` (this process owns the deployment's chain); see the module doc.
    ``evidence_dir``: where the evidence files sent with ``evidence.stored`` records go (the core's); without
    it, records carrying a file stay queued."""
    result = DrainResult()
    if _max_id(store) == 0:
        return result  # nothing queued (the daemon's idle tick): one query, no lock taken
    with _drain_lock(store) as got:
        if not got:
            result.busy = True
            return result
        registered = _CONFIRMED.get(log) is not None or _registered(store, log)
        while True:
            n, recovered = _drain_batch(store, log, batch, evidence_dir)
            result.appended += n
            result.recovered += recovered
            if not registered:
                registered = _register(store, log)
            if registered:
                _CONFIRMED[log] = True  # a chain's first record never changes: checked once per writer
            if n + recovered < batch:
                return result


def _drain_batch(store: Store, log: AuditLog, batch: int, evidence_dir: Path | None) -> tuple[int, int]:
    from sqlalchemy import delete, select, update

    from agent.store import AuditOutbox
    with store.session() as s:
        rows = list(s.scalars(select(AuditOutbox).order_by(AuditOutbox.id).limit(batch)))
        if evidence_dir is None:  # nowhere to put the evidence a record names: it waits for a drain that has one
            rows = [r for r in rows if r.attachment is None]
        if not rows:
            return 0, 0
        marked = [r for r in rows if r.drain_from is not None]
        chained = _chained_ids(log, min(r.drain_from or 0 for r in marked), {r.id for r in marked}) if marked else set()
        todo = [r for r in rows if r.id not in chained]
        start = log.current_head()[0]
        if todo:
            s.execute(update(AuditOutbox).where(AuditOutbox.id.in_([r.id for r in todo])).values(drain_from=start))
    for row in todo:
        if row.attachment is not None and evidence_dir is not None:
            _store_attachment(evidence_dir, row.record, row.attachment)
        fields = dict(row.record)
        event = str(fields.pop("event", "audit.unknown"))
        for key in RESERVED_FIELDS:  # never in a queued record; a forged one cannot steer the chain
            fields.pop(key, None)
        log.record(event, outbox_id=row.id, **fields)
    log.flush()  # durable in the chain before the rows go: a power cut must not lose what the outbox forgets
    failpoint("audit-drain-appended")
    with store.session() as s:
        s.execute(delete(AuditOutbox).where(AuditOutbox.id.in_([r.id for r in rows])))
    return len(todo), len(rows) - len(todo)


def _chained_ids(log: AuditLog, after_seq: int, wanted: set[int]) -> set[int]:
    """The ``outbox_id`` values among ``wanted`` that the chain holds after ``after_seq`` (newest segments
    first, stopping at the one that starts at or before ``after_seq``)."""
    found: set[int] = set()
    for path in reversed(list_segments(log.directory)):
        first_seq: int | None = None
        with path.open("rb") as handle:
            for line in handle:
                if first_seq is None:
                    first_seq = _seq(line)
                if b'"outbox_id":' not in line:
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if int(rec.get("seq", 0)) > after_seq and rec.get("outbox_id") in wanted:
                    found.add(int(rec["outbox_id"]))
        if first_seq is not None and first_seq <= after_seq:
            break
    return found


def _seq(line: bytes) -> int | None:
    try:
        return int(json.loads(line).get("seq", 0))
    except (ValueError, AttributeError):
        return None


def _genesis(directory: Path) -> str | None:
    segments = list_segments(directory)
    if not segments:
        return None
    with segments[0].open("rb") as handle:
        first = handle.readline()
    try:
        return str(json.loads(first)["hash"])
    except (ValueError, KeyError):
        return None


def _registered(store: Store, log: AuditLog) -> bool:
    """Is this log the deployment's registered chain? False when none is registered yet (or the log is empty);
    raises :class:`AuditChainConflict` when another chain is."""
    from agent.store import AuditChain
    with store.session() as s:
        row = s.get(AuditChain, CHAIN)
        registered = (row.genesis, row.writer) if row is not None else None
    mine = _genesis(log.directory)
    if registered is None or mine is None:
        return False
    if registered[0] != mine:
        raise AuditChainConflict(
            f"the deployment's audit chain (first record {registered[0][:16]}…, written at {registered[1]}) is "
            f"not the one in {log.directory} (first record {mine[:16]}…): this process does not drain the site "
            "workers' records into it. Give it the deployment's audit directory, or set workers.audit: outbox "
            "so its own records go to the chain's writer (docs/workers.md)")
    return True


def _register(store: Store, log: AuditLog) -> bool:
    """Register this log as the deployment's chain (when none is); False while it has no first record."""
    from agent.store import AuditChain
    mine = _genesis(log.directory)
    if mine is None:
        return False
    with store.session() as s:
        if s.get(AuditChain, CHAIN) is None:
            s.add(AuditChain(name=CHAIN, genesis=mine, writer=f"{socket.gethostname()}:{log.directory}"))
    return _registered(store, log)  # raises if another writer registered its chain first


class Drainer:
    """The writer's drain loop (the daemon) and its bounded final drain (a CLI run before it exits)."""

    def __init__(self, store: Store, log: AuditLog, *, interval: float = 0.5, evidence_dir: Path | None = None
                 ) -> None:
        self.store, self.log, self.interval, self.evidence_dir = store, log, interval, evidence_dir
        _DRAINERS[log] = self  # settle() (the dispatcher, which knows only the log) finds this one
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.conflict: AuditChainConflict | None = None

    def drain_through(self, up_to: int | None = None, *, timeout: float = 10.0) -> bool:
        """Make sure every record queued so far (id <= ``up_to``, default: the newest now) is in the chain:
        drain, or wait while another writer of this chain drains. False if some still wait after ``timeout``
        (the writer is elsewhere or stuck): they stay queued, durably, for the next drain."""
        up_to = _max_id(self.store) if up_to is None else up_to
        if up_to == 0:
            return True
        deadline = time.monotonic() + timeout
        while True:
            try:
                drain(self.store, self.log, evidence_dir=self.evidence_dir)
            except AuditChainConflict as exc:
                self._warn(exc)
                return False
            if pending(self.store, up_to=up_to) == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-drain", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                drain(self.store, self.log, evidence_dir=self.evidence_dir)
            except AuditChainConflict as exc:
                self._warn(exc)
            except Exception as exc:  # noqa: BLE001 - the database may be away: the records wait; try again
                _log.warning("audit drain failed (records stay queued): %s: %s", type(exc).__name__, exc)

    def _warn(self, exc: AuditChainConflict) -> None:
        if self.conflict is None:  # say it once, loudly, in this process's output and its own log
            self.conflict = exc
            print(f"agent[{os.getpid()}]: {exc}", file=sys.stderr, flush=True)
            self.log.record("audit.chain_conflict", error=str(exc))


def settle(store: Store, audit: Any) -> bool:
    """A routed action settled: if ``audit`` is this deployment's chain (not an outbox), bring in what its
    worker queued (the outcome included), so the chain reads in order. Never waits: when another process of this
    chain is draining, it appends them (and the CLI's final drain waits for that, bounded). A no-op in a process
    that queues its own records, or where no drainer was made for ``audit``."""
    drainer = _DRAINERS.get(audit)  # made with the writer's audit log (agent.app), knowing its evidence folder
    if drainer is None:
        return not getattr(audit, "transactional", False)
    try:
        return not drain(store, audit, evidence_dir=drainer.evidence_dir).busy
    except AuditChainConflict as exc:
        drainer._warn(exc)
        return False
    except Exception as exc:  # noqa: BLE001 - the database is away: the records wait for the next drain
        _log.warning("audit drain failed (records stay queued): %s: %s", type(exc).__name__, exc)
        return False

