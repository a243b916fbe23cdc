"""Audit log writer: chaining, rotation, concurrency (threads and processes), reading back."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agent.audit import AuditClosedError, AuditLog, records, verify
from agent.audit.canonical import GENESIS_HASH, body_hash
from agent.audit.segments import list_segments

REPO = Path(__file__).resolve().parents[2]


def _lines(directory: Path) -> list[dict]:
    return [json.loads(line) for path in list_segments(directory) for line in path.read_bytes().splitlines()]


class TestRecord:
    def test_first_record_chains_to_genesis(self, tmp_path: Path) -> None:
        """The first record has seq 1 and the all-zero prev_hash, and its hash covers its body."""
        with AuditLog(tmp_path) as log:
            written = log.record("incident.opened", incident="INC-1", title="test")
        [stored] = _lines(tmp_path)
        assert stored == written
        assert stored["seq"] == 1 and stored["prev_hash"] == GENESIS_HASH
        body = {k: v for k, v in stored.items() if k != "hash"}
        assert body_hash(body) == stored["hash"]

    def test_records_chain_in_order(self, tmp_path: Path) -> None:
        """Each record's prev_hash is the previous record's hash and seq increases by one."""
        with AuditLog(tmp_path) as log:
            for i in range(5):
                log.record("step", i=i)
        rows = _lines(tmp_path)
        assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
        assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))

    def test_context_fields_present(self, tmp_path: Path) -> None:
        """Records carry actor, host, pid and a UTC microsecond timestamp."""
        with AuditLog(tmp_path, actor="alice") as log:
            rec = log.record("x")
        assert rec["actor"] == "alice" and rec["host"] and isinstance(rec["pid"], int)
        assert rec["ts"].endswith("Z") and len(rec["ts"]) == len("2026-11-23T09:40:00.123456Z")

    def test_event_may_override_actor(self, tmp_path: Path) -> None:
        """An approval names its approver as actor instead of the process user."""
        with AuditLog(tmp_path, actor="daemon") as log:
            assert log.record("approval.granted", actor="bob")["actor"] == "bob"

    def test_reserved_fields_refused(self, tmp_path: Path) -> None:
        """Callers cannot set seq, ts, prev_hash or hash."""
        with AuditLog(tmp_path) as log, pytest.raises(TypeError, match="seq"):
            log.record("x", seq=7)

    def test_closed_log_refuses_records(self, tmp_path: Path) -> None:
        """record() after close() raises instead of silently dropping."""
        log = AuditLog(tmp_path)
        log.close()
        with pytest.raises(AuditClosedError):
            log.record("x")

    def test_reopen_continues_chain(self, tmp_path: Path) -> None:
        """A new writer picks up the head from the last line of the existing segment."""
        with AuditLog(tmp_path) as log:
            log.record("a")
        with AuditLog(tmp_path) as log:
            rec = log.record("b")
        assert rec["seq"] == 2
        assert verify(tmp_path).ok

    def test_rotation_continues_chain_across_days(self, tmp_path: Path) -> None:
        """A new day's segment chains onto the last record of the previous day's segment."""
        old = tmp_path / "audit-2020-01-01.jsonl"
        with AuditLog(tmp_path) as log:
            log.record("today")
        today = list_segments(tmp_path)[0]
        today.rename(old)
        (tmp_path / "audit.head").unlink()
        with AuditLog(tmp_path) as log:
            rec = log.record("next")
        assert [p.name for p in list_segments(tmp_path)] == [old.name, today.name]
        assert rec["seq"] == 2
        report = verify(tmp_path)
        assert report.ok, report.render()
        assert report.records == 2

    def test_open_writer_rotates_at_utc_midnight(self, tmp_path: Path) -> None:
        """A writer that stays open across midnight starts the new day's segment and keeps the chain."""
        from unittest import mock

        days = iter(["2026-11-23", "2026-11-23", "2026-11-24", "2026-11-24"])
        with mock.patch("agent.audit.writer.utc_day", lambda: next(days)), AuditLog(tmp_path) as log:
            log.record("before-midnight")
            log.record("still-before")
            log.record("after-midnight")
            log.record("later")
        assert [p.name for p in list_segments(tmp_path)] == ["audit-2026-11-23.jsonl", "audit-2026-11-24.jsonl"]
        assert [len(p.read_bytes().splitlines()) for p in list_segments(tmp_path)] == [2, 2]
        report = verify(tmp_path)
        assert report.ok and report.records == 4, report.render()


class TestConcurrency:
    def test_threads_share_one_chain(self, tmp_path: Path) -> None:
        """Eight threads writing at once produce one gap-free valid chain."""
        with AuditLog(tmp_path) as log:
            def work(n: int) -> None:
                for i in range(200):
                    log.record("t", thread=n, i=i)
            threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        report = verify(tmp_path)
        assert report.ok, report.render()
        assert report.records == 1600

    def test_processes_share_one_chain(self, tmp_path: Path) -> None:
        """Three processes appending concurrently (flock) still produce one valid chain with every record."""
        script = (
            "import sys; from pathlib import Path; from agent.audit import AuditLog\n"
            "with AuditLog(Path(sys.argv[1]), fsync_every=1000) as log:\n"
            "    for i in range(400): log.record('p', proc=sys.argv[2], i=i)\n"
        )
        procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(n)], cwd=REPO)
                 for n in range(3)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
        report = verify(tmp_path)
        assert report.ok, report.render()
        assert report.records == 1200
        per_proc = {str(n): sorted(r["i"] for r in _lines(tmp_path) if r["proc"] == str(n)) for n in range(3)}
        assert all(v == list(range(400)) for v in per_proc.values())


class TestReadBack:
    def test_records_filters_by_incident(self, tmp_path: Path) -> None:
        """records(dir, incident) yields only that incident's records, oldest first."""
        with AuditLog(tmp_path) as log:
            log.record("a", incident="INC-1")
            log.record("b", incident="INC-2")
            log.record("c", incident="INC-1", note="mentions INC-2 in text")
        assert [r["event"] for r in records(tmp_path, "INC-1")] == ["a", "c"]
        assert len(list(records(tmp_path))) == 3

    def test_structlog_processor_routes_events(self, tmp_path: Path) -> None:
        """AuditLog.processor works as a structlog processor and passes the event on."""
        import structlog

        with AuditLog(tmp_path) as log:
            logger = structlog.wrap_logger(structlog.testing.ReturnLogger(),
                                           processors=[log.processor, structlog.processors.JSONRenderer()])
            logger.info("action.done", incident="INC-9", token="abc123")
        [rec] = _lines(tmp_path)
        assert rec["event"] == "action.done" and rec["token"] == "***"
