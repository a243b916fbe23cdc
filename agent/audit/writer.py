"""The audit log writer: append-only, hash-chained, Ed25519-checkpointed JSONL segments, one per UTC day.

Why this shape: counsel must be able to trust the log without trusting us. Each record carries the previous
record's hash, so an edit, deletion or reordering breaks the chain; periodic checkpoints sign the chain head, so
an attacker who recomputes every hash still cannot forge the signature. Several processes (the daemon and a CLI
run) may write at once: an ``flock`` on ``.audit.lock`` serialises them, and the chain head is re-read under the
lock whenever another writer touched the log (one ``fstat`` tells us; then the last line is read backwards).

Durability bound (see docs/audit-format.md): ``record()`` returns after ``write(2)``, so a killed process loses
nothing it returned; a power or kernel failure loses at most the last ``fsync_every`` records written by each
process and never records older than ``fsync_interval`` seconds plus one fsync.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from agent.audit.canonical import HEAD_FILE, LOCK_FILE, segment_name
from agent.audit.processors import (
    RESERVED_FIELDS,
    Chainer,
    ChainHead,
    EventDict,
    Redactor,
    add_context,
    utc_day,
    utc_timestamp,
)
from agent.audit.segments import list_segments, tail_state

__all__ = ["AuditClosedError", "AuditLog"]

CHECKPOINT_EVENT = "audit.checkpoint"


class AuditClosedError(RuntimeError):
    """``record()`` was called after ``close()``."""


class AuditLog:
    """Append audit records to ``directory``; see the module docstring for the guarantees.

    ``signing_key``: Ed25519 private key (PEM, mode 0600); without it the log is chained but not checkpointed.
    ``fsync_every``/``fsync_interval``: durability batching. ``checkpoint_every``/``checkpoint_interval``: how often
    a signed checkpoint is written (also at ``close()``). ``known_secrets``: literal values to mask wherever they
    appear.
    """

    def __init__(self, directory: Path, *, signing_key: Path | None = None, actor: str | None = None,
                 fsync_every: int = 64, fsync_interval: float = 0.2, checkpoint_every: int = 1000,
                 checkpoint_interval: float = 300.0, known_secrets: tuple[str, ...] = ()) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fsync_every = max(1, fsync_every)
        self.fsync_interval = fsync_interval
        self.checkpoint_every = max(1, checkpoint_every)
        self.checkpoint_interval = checkpoint_interval
        self.context = add_context(actor)
        self.redactor = Redactor(known_secrets)
        # Called with each record as written (redacted, chained): the daemon's notifier derives notices from them.
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._signer: Any = None
        self.key_fingerprint: str | None = None
        if signing_key is not None:
            from agent.audit.keys import fingerprint, load_private_key, public_raw

            self._signer = load_private_key(Path(signing_key))
            self.key_fingerprint = fingerprint(public_raw(self._signer))
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        self._head_fd = os.open(self.directory / HEAD_FILE, os.O_RDWR | os.O_CREAT, 0o640)
        self._tlock = threading.RLock()
        self._head = ChainHead()
        self._chainer = Chainer(self._head)
        self._seg_name: str | None = None
        self._seg_fd: int | None = None
        self._seg_size = 0
        self._pending = 0
        self._oldest_pending = 0.0
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._last_event = ""
        self._closed = False
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        if fsync_interval > 0 or (self._signer is not None and checkpoint_interval > 0):
            self._timer = threading.Thread(target=self._tick, name="audit-flush", daemon=True)
            self._timer.start()

    # ------------------------------------------------------------------ public API
    def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """Redact, timestamp, chain and append one record; return it as written (without the line bytes)."""
        clash = RESERVED_FIELDS.intersection(fields)
        if clash:
            raise TypeError(f"audit fields {sorted(clash)} are set by the log itself")
        event_dict: EventDict = {"event": event, **fields}
        event_dict = self.context(None, "record", event_dict)
        event_dict = self.redactor(None, "record", event_dict)
        with self._tlock:
            if self._closed:
                raise AuditClosedError("audit log is closed")
            with self._flock():
                written = self._append_locked(event_dict)
                self._since_checkpoint += 1
                if self._signer is not None and self._since_checkpoint >= self.checkpoint_every:
                    self._checkpoint_locked()
                elif self._pending >= self.fsync_every:
                    self._fsync_locked()
        for listener in self.listeners:  # outside the locks: a listener may record in turn (notify)
            listener(written)
        return written

    def processor(self, logger: object, method_name: str, event_dict: EventDict) -> EventDict:
        """structlog processor: audit every event passing through a structlog chain, then pass it on unchanged."""
        fields = {k: v for k, v in event_dict.items() if k != "event" and k not in RESERVED_FIELDS}
        self.record(str(event_dict.get("event", method_name)), **fields)
        return event_dict

    def add_known_secret(self, value: Any) -> None:
        """Mask this literal value (a ``Secret`` or string) in every later record."""
        self.redactor.add_known(value)

    def checkpoint(self) -> dict[str, Any] | None:
        """Write a signed checkpoint now (None without a signing key or on an empty log)."""
        with self._tlock, self._flock():
            return self._checkpoint_locked()

    def flush(self) -> None:
        """Make every record written so far durable (fsync segment, then the head file)."""
        with self._tlock, self._flock():
            self._fsync_locked()

    def current_head(self) -> tuple[int, str]:
        """The log's real head now: other processes may have appended since this writer last did."""
        with self._tlock, self._flock():
            self._prepare_locked()
            return self.head

    @property
    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last record this writer knows of."""
        return self._head.seq, self._head.hash

    def close(self) -> None:
        """Checkpoint (if signing and the log does not already end in one), fsync, release files. Idempotent."""
        with self._tlock:
            if self._closed:
                return
            self._stop.set()
            with self._flock():
                if self._signer is not None:
                    self._prepare_locked()
                    if self._head.seq and self._last_event != CHECKPOINT_EVENT:
                        self._checkpoint_locked()
                self._fsync_locked()
            self._closed = True
            for fd in (self._seg_fd, self._head_fd, self._lock_fd):
                if fd is not None:
                    os.close(fd)
            self._seg_fd = None
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------------ internals (call with both locks held)
    @contextmanager
    def _flock(self) -> Iterator[None]:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _append_locked(self, event_dict: EventDict) -> dict[str, Any]:
        self._prepare_locked()
        return self._write_locked(event_dict)

    def _prepare_locked(self) -> None:
        """Sync to the real head (rotating at UTC midnight) and log any torn tail we had to cut."""
        self._sync_head(segment_name(utc_day()))
        if self._pending_recovery is not None:
            name, offset, torn = self._pending_recovery
            self._pending_recovery = None
            notice: EventDict = {
                "event": "audit.recovered",
                "segment": name,
                "offset": offset,
                "torn_bytes": len(torn),
                "torn_sha256": hashlib.sha256(torn).hexdigest(),
                "reason": "a writer was killed mid-write; its incomplete last line was never committed and was cut",
            }
            self._write_locked(self.context(None, "recover", notice))

    def _write_locked(self, event_dict: EventDict) -> dict[str, Any]:
        event_dict["ts"] = utc_timestamp()
        self._chainer(None, "record", event_dict)
        line: bytes = event_dict.pop("__line__")
        assert self._seg_fd is not None
        os.write(self._seg_fd, line)
        self._seg_size += len(line)
        self._last_event = str(event_dict["event"])
        if self._pending == 0:
            self._oldest_pending = time.monotonic()
        self._pending += 1
        return dict(event_dict)

    def _sync_head(self, target: str) -> None:
        """Make ``self._head`` the log's real head and open the segment to append to (rotating if needed).

        ``target`` is today's segment; we never append to an older one than the newest that exists.
        """
        if self._seg_fd is not None and target == self._seg_name:
            st = os.fstat(self._seg_fd)
            if st.st_size == self._seg_size and st.st_nlink > 0:
                return  # nobody else wrote since our last append: cached head is current
        segments = list_segments(self.directory)
        latest = segments[-1].name if segments else None
        name = max(n for n in (target, latest, self._seg_name) if n is not None)
        self._load_head(segments)
        if name != self._seg_name:
            if self._seg_fd is not None:
                if self._pending:
                    os.fsync(self._seg_fd)
                    self._pending = 0
                os.close(self._seg_fd)
            created = not (self.directory / name).exists()
            self._seg_fd = os.open(self.directory / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._seg_name = name
            if created:
                dir_fd = os.open(self.directory, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        self._seg_size = os.fstat(self._seg_fd).st_size  # type: ignore[arg-type]

    def _load_head(self, segments: list[Path]) -> None:
        """Read the last committed record, newest segment first; cut a torn tail left by a killed writer."""
        for index, path in enumerate(reversed(segments)):
            fd = os.open(path, os.O_RDWR)
            try:
                size = os.fstat(fd).st_size
                state = tail_state(fd, size)
                if state.torn_bytes and index == 0:
                    torn = os.pread(fd, state.torn_bytes, state.committed_size)
                    os.ftruncate(fd, state.committed_size)
                    os.fsync(fd)
                    self._pending_recovery = (path.name, state.committed_size, torn)
            finally:
                os.close(fd)
            if state.last_line is not None:
                record = json.loads(state.last_line)
                self._head.seq = int(record["seq"])
                self._head.hash = str(record["hash"])
                self._last_event = str(record.get("event", ""))
                break
        else:
            self._head.seq, self._head.hash = 0, "0" * 64
            self._last_event = ""

    _pending_recovery: tuple[str, int, bytes] | None = None

    def _checkpoint_locked(self) -> dict[str, Any] | None:
        if self._signer is None:
            return None
        from agent.audit.keys import sign_checkpoint

        self._prepare_locked()
        if self._head.seq == 0:
            return None
        covers_seq, covers_hash = self._head.seq, self._head.hash
        event_dict: EventDict = {
            "event": CHECKPOINT_EVENT,
            "covers_seq": covers_seq,
            "covers_hash": covers_hash,
            "key_fingerprint": self.key_fingerprint,
            "signature": sign_checkpoint(self._signer, covers_seq, covers_hash),
        }
        event_dict = self.context(None, "checkpoint", event_dict)
        written = self._write_locked(event_dict)
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._fsync_locked()
        return written

    def _fsync_locked(self) -> None:
        if self._seg_fd is None:
            return
        if self._pending:
            os.fsync(self._seg_fd)
            self._pending = 0
        if os.fstat(self._seg_fd).st_size != self._seg_size:
            return  # another process appended since our last write; its own fsync will record the newer head
        head = json.dumps({"seq": self._head.seq, "hash": self._head.hash, "segment": self._seg_name,
                           "offset": self._seg_size}, separators=(",", ":")).encode() + b"\n"
        os.pwrite(self._head_fd, head.ljust(255, b" ")[:255] + b"\n", 0)
        os.fsync(self._head_fd)

    def _tick(self) -> None:
        period = min(p for p in (self.fsync_interval, self.checkpoint_interval) if p > 0)
        while not self._stop.wait(period / 2):
            with self._tlock:
                if self._closed:
                    return
                now = time.monotonic()
                due_fsync = self._pending and now - self._oldest_pending >= self.fsync_interval
                due_ckpt = (self._signer is not None and self._since_checkpoint
                            and now - self._last_checkpoint >= self.checkpoint_interval)
                if due_fsync or due_ckpt:
                    with self._flock():
                        if due_ckpt:
                            self._checkpoint_locked()
                        else:
                            self._fsync_locked()
