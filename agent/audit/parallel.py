"""Verify a large audit log on several cores: chunks are checked in worker processes, then stitched in order.

Why: nearly all of verification is per record (parse, re-encode, hash, signature) and only the links between
neighbouring records are sequential. Each worker runs the very same per-line checks (:meth:`_State.check_line`)
over a byte range cut at line boundaries, including the links *inside* its range; the parent then checks the one
link at each range boundary and combines the counts. The outcome — ok, first error (file, line, seq, reason),
counts, notes — is the one the sequential pass gives (tested on the tamper corpus with forced chunking).
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.audit.anchor import TrustAnchor
from agent.audit.chain import _State
from agent.audit.verdict import (
    BROKEN_LINK,
    SEQ_GAP,
    TRUNCATED_LINE,
    VerifyError,
    VerifyReport,
    _Stop,
)

__all__ = ["plan_chunks", "verify_chunks"]


@dataclass
class _Chunk:
    path: str
    start: int
    end: int
    final: bool  # the last bytes of the last segment (a torn final line there is a note, not an error)


@dataclass
class _Result:
    """What a worker found in its range (line numbers relative to the range, from 1)."""

    lines: int = 0
    records: int = 0
    first_seq: int | None = None
    first_prev: str | None = None  # prev_hash of the first line, once its own checks passed
    last_seq: int | None = None
    last_hash: str | None = None
    checkpoints: int = 0
    last_cp_seq: int | None = None
    last_cp_hash: str | None = None
    unsigned: int = 0
    opened: set[str] = field(default_factory=set)
    anchor_hash: str | None = None
    withheld: int = 0
    notes: list[str] = field(default_factory=list)
    error: VerifyError | None = None


def plan_chunks(segments: list[Path], pieces: int) -> list[_Chunk]:
    """Cut the segments into about ``pieces`` byte ranges of similar size, each ending after a newline."""
    total = sum(p.stat().st_size for p in segments) or 1
    target = max(1, total // max(1, pieces))
    chunks: list[_Chunk] = []
    for index, path in enumerate(segments):
        size = path.stat().st_size
        start = 0
        with path.open("rb") as handle:
            while start < size:
                cut = min(size, start + target)
                if cut < size:
                    handle.seek(cut)
                    rest = handle.readline()
                    cut += len(rest)
                chunks.append(_Chunk(str(path), start, cut, final=index == len(segments) - 1 and cut >= size))
                start = cut
    return chunks


def _worker(chunk: _Chunk, public_key: str | None, head: dict[str, Any] | None, watch_seq: int | None,
            watch_incident: str | None, allow_withheld: bool) -> _Result:
    key = fingerprint = None
    if public_key is not None:
        from agent.audit.keys import fingerprint as make_fingerprint
        from agent.audit.keys import load_public_key, public_raw

        key = load_public_key(Path(public_key))
        fingerprint = make_fingerprint(public_raw(key))
    state = _State(key, fingerprint, None, None, head, TrustAnchor(seq=watch_seq, incident=watch_incident))
    state.allow_withheld = allow_withheld
    report = VerifyReport(ok=True, records=0, first_error=None, checkpoints_verified=0, key_fingerprint=fingerprint)
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        data = handle.read(chunk.end - chunk.start)
    lines = data.splitlines(keepends=True)
    name = Path(chunk.path).name
    result = _Result(lines=len(lines))
    try:
        for lineno, line in enumerate(lines, 1):
            if not line.endswith(b"\n"):
                if chunk.final and lineno == len(lines):
                    report.notes.append(f"{name}:{{line}}: incomplete final line ({len(line)} bytes) ignored — a "
                                        "writer was killed mid-write; it was never committed")
                    break
                raise _Stop(VerifyError(name, lineno, state._next_seq(), TRUNCATED_LINE))
            state.check_line(name, lineno, line, report)
            if lineno == 1:
                result.first_prev = state.first_prev_hash
    except _Stop as stop:
        result.error = stop.error
        if stop.error.line == 1:
            result.first_prev = state.first_prev_hash
    result.records, result.first_seq = report.records, report.first_seq
    result.last_seq, result.last_hash = report.last_seq, report.last_hash
    result.checkpoints, result.last_cp_seq = report.checkpoints_verified, report.last_checkpoint_seq
    result.last_cp_hash = report.last_checkpoint_hash
    result.unsigned, result.opened, result.anchor_hash = state.unsigned, state.opened, state.anchor_hash
    result.withheld, result.notes = state.withheld, report.notes
    return result


def _pool(workers: int) -> ProcessPoolExecutor:
    # fork is cheap and safe in a single-threaded CLI; with other threads alive (a daemon) spawn fresh workers
    method = "fork" if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods() \
        else "spawn"
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method))


def verify_chunks(segments: list[Path], state: _State, report: VerifyReport, public_key: Path | None,
                  workers: int, pieces: int | None = None) -> None:
    """Fill ``state``/``report`` as the sequential pass would; raise ``_Stop`` at the first error."""
    chunks = plan_chunks(segments, pieces or workers * 4)
    args = (str(public_key) if public_key is not None else None, state.head, state.watch_seq,
            state.watch_incident, state.allow_withheld)
    with _pool(workers) as pool:
        results = list(pool.map(_worker, chunks, *[[a] * len(chunks) for a in args]))
    line_base: dict[str, int] = {}
    previous: _Result | None = None
    unsigned = 0
    for chunk, result in zip(chunks, results, strict=True):
        base = line_base.get(chunk.path, 0)
        line_base[chunk.path] = base + result.lines
        name = Path(chunk.path).name
        error = _shift(result.error, base)
        if error is not None and error.seq is None and result.error is not None and result.error.line == 1 \
                and previous is not None and previous.last_seq is not None:
            error.seq = previous.last_seq + 1  # "the next seq", which only the parent knows at a range start
        boundary = None
        if previous is not None and result.first_prev is not None:
            if result.first_prev != previous.last_hash:
                boundary = VerifyError(name, base + 1, result.first_seq, BROKEN_LINK)
            elif result.first_seq != (previous.last_seq or 0) + 1:
                boundary = VerifyError(name, base + 1, result.first_seq, SEQ_GAP)
        if boundary is not None:
            raise _Stop(boundary)
        report.records += result.records
        if previous is None:
            report.notes.extend(n.replace("{line}", str(base + result.lines)) for n in result.notes)
            report.first_seq = result.first_seq
        else:
            report.notes.extend(n.replace("{line}", str(base + result.lines)) for n in result.notes
                                if not n.startswith("log starts at seq"))
        if result.records:
            report.last_seq, report.last_hash = result.last_seq, result.last_hash
            state.prev_seq, state.prev_hash = result.last_seq, result.last_hash
        report.checkpoints_verified += result.checkpoints
        if result.last_cp_seq is not None:
            report.last_checkpoint_seq, report.last_checkpoint_hash = result.last_cp_seq, result.last_cp_hash
        unsigned = result.unsigned if result.checkpoints else unsigned + result.unsigned
        state.unsigned = unsigned
        state.opened |= result.opened
        state.anchor_hash = state.anchor_hash or result.anchor_hash
        state.withheld += result.withheld
        if error is not None:
            raise _Stop(error)
        if result.records:
            previous = result


def _shift(error: VerifyError | None, base: int) -> VerifyError | None:
    if error is None:
        return None
    return VerifyError(error.file, error.line + base if error.line else 0, error.seq, error.reason)
