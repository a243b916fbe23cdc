"""Parallel verification gives the sequential verdict: same ok, first error, counts and notes on a tamper corpus.

The chunking is forced small (down to a few lines per range) so that every kind of damage also lands on a range
boundary, where the parent — not a worker — must catch it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agent.audit import AuditLog, TrustAnchor, verify
from agent.audit.canonical import encode_line, withheld_line
from agent.audit.keys import generate_keypair
from agent.audit.segments import list_segments


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pkeys")
    public, _ = generate_keypair(base / "audit.key")
    other, _ = generate_keypair(base / "other.key")
    return {"private": base / "audit.key", "public": public, "other": other}


@pytest.fixture()
def log_dir(tmp_path: Path, keys: dict[str, Path]) -> Path:
    """~130 records over two segments, a checkpoint every 10."""
    directory = tmp_path / "audit"
    with AuditLog(directory, signing_key=keys["private"], checkpoint_every=10, checkpoint_interval=0) as log:
        log.record("incident.opened", incident="INC-P")
        for i in range(60):
            log.record("action.transition", incident="INC-P" if i % 3 else "INC-Q", i=i, detail="ünï")
    first = list_segments(directory)[0]
    lines = first.read_bytes().splitlines(keepends=True)
    (directory / "audit-2000-01-01.jsonl").write_bytes(b"".join(lines[:40]))
    first.write_bytes(b"".join(lines[40:]))
    with AuditLog(directory, signing_key=keys["private"], checkpoint_every=10, checkpoint_interval=0) as log:
        for i in range(60):
            log.record("action.done", incident="INC-P", i=i)
    return directory


def _segment(directory: Path) -> Path:
    return list_segments(directory)[-1]


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _edit(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    ls = _lines(seg)
    ls[17] = ls[17].replace(b'"i":', b'"i": ', 1) if b'"i":' in ls[17] else ls[17][:-3] + b'x"}\n'
    seg.write_bytes(b"".join(ls))


def _value(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    ls = _lines(seg)
    ls[23] = ls[23].replace(b'"action.done"', b'"action.undo"')
    seg.write_bytes(b"".join(ls))


def _delete(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    ls = _lines(seg)
    seg.write_bytes(b"".join(ls[:30] + ls[31:]))


def _swap(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    ls = _lines(seg)
    ls[8], ls[9] = ls[9], ls[8]
    seg.write_bytes(b"".join(ls))


def _renumber(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    ls = _lines(seg)
    row = json.loads(ls[12])
    row["seq"] += 5
    ls[12] = encode_line({x: v for x, v in row.items() if x != "hash"})[0]
    seg.write_bytes(b"".join(ls))


def _torn_tail(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    data = seg.read_bytes()
    seg.write_bytes(data + b'{"seq":9999,"half')


def _torn_older(d: Path, k: dict[str, Path]) -> None:
    older = list_segments(d)[0]
    data = older.read_bytes()
    older.write_bytes(data[:-20])


def _cut_end(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    seg.write_bytes(b"".join(_lines(seg)[:-15]))


def _prefix(d: Path, k: dict[str, Path]) -> None:
    older = list_segments(d)[0]
    older.write_bytes(b"".join(_lines(older)[25:]))


def _stub(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    ls = _lines(seg)
    row = json.loads(ls[5])
    stored = row.pop("hash")
    ls[5] = withheld_line(row, stored)
    seg.write_bytes(b"".join(ls))


def _reencode(d: Path, k: dict[str, Path]) -> None:
    seg = _segment(d)
    ls = _lines(seg)
    ls[40] = (json.dumps(json.loads(ls[40])) + "\n").encode()
    seg.write_bytes(b"".join(ls))


def _intact(d: Path, k: dict[str, Path]) -> None:
    return None


CASES: dict[str, Callable[[Path, dict[str, Path]], None]] = {
    f.__name__.strip("_"): f for f in (_intact, _edit, _value, _delete, _swap, _renumber, _torn_tail, _torn_older,
                                       _cut_end, _prefix, _stub, _reencode)}


def _summary(report: Any) -> dict[str, Any]:
    out = {"ok": report.ok, "error": None if report.first_error is None else (
        report.first_error.file, report.first_error.line, report.first_error.seq, report.first_error.reason),
        "notes": report.notes, "proven": report.proven, "not_proven": report.not_proven}
    if report.ok:
        out.update(records=report.records, first=report.first_seq, last=(report.last_seq, report.last_hash),
                   checkpoints=report.checkpoints_verified,
                   signed=(report.last_checkpoint_seq, report.last_checkpoint_hash),
                   unsigned=report.unsigned_after_checkpoint)
    return out


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("chunks", [3, 11, 60])
def test_parallel_equals_sequential(case: str, chunks: int, log_dir: Path, keys: dict[str, Path]) -> None:
    """Same verdict, error location and statements, with and without a key and with an incident anchor."""
    CASES[case](log_dir, keys)
    for key in (keys["public"], None, keys["other"]):
        for anchor in (None, TrustAnchor(incident="INC-P")):
            sequential = verify(log_dir, public_key=key, anchor=anchor, workers=1)
            parallel = verify(log_dir, public_key=key, anchor=anchor, workers=2, chunks=chunks)
            assert _summary(parallel) == _summary(sequential), (case, chunks, key, anchor)
    if case == "intact":
        assert verify(log_dir, public_key=keys["public"], workers=2, chunks=chunks).ok


def test_workers_are_spawned_when_threads_are_alive(log_dir: Path, keys: dict[str, Path]) -> None:
    """With another thread running (a daemon, an open AuditLog's flush timer) workers are spawned, not forked."""
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        report = verify(log_dir, public_key=keys["public"], workers=2, chunks=5)
    finally:
        stop.set()
    assert report.ok and report.records == verify(log_dir, public_key=keys["public"], workers=1).records
