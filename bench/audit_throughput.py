"""Audit log performance: durable append rate and offline verify speed, each against a baseline from this run.

Usage: python bench/audit_throughput.py [--records N] [--write-records N] [--threads N]

* append: records/s through AuditLog (redaction, chain, flock, fsync every 64 records / 0.2 s) — target ≥ 5000/s —
  versus a bare baseline that only json-dumps and appends the same records with the same fsync cadence.
* verify: records/s for `agent audit verify` with signature checks over --records records (default 1,000,000)
  versus a parse-only pass (json.loads of every line), i.e. the floor any verifier pays — target ≥ 100,000/s;
  also in CPU time (a shared machine's load halves wall-clock rates) and with a trust anchor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agent.audit import AuditLog, TrustAnchor, verify
from agent.audit.canonical import GENESIS_HASH, encode_line, segment_name
from agent.audit.keys import fingerprint, generate_keypair, load_private_key, public_raw, sign_checkpoint

TARGET_APPEND = 5000.0
TARGET_VERIFY = 100_000.0


def _fields(i: int) -> dict[str, object]:
    return {"incident": "INC-BENCH", "action_id": f"a{i % 50}", "target": f"host{i % 200}",
            "connector": "ssh_linux", "action": "isolate", "from_state": "apply", "to_state": "verify",
            "detail": {"summary": "ruleset replaced", "rules": i % 7}}


def bench_append(directory: Path, count: int, threads: int, key: Path | None, **options: object) -> float:
    log = AuditLog(directory, signing_key=key, actor="bench", **options)  # type: ignore[arg-type]
    per_thread = count // threads

    def work(offset: int) -> None:
        for i in range(per_thread):
            log.record("action.transition", **_fields(offset + i))

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(n * per_thread,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    log.close()
    return per_thread * threads / (time.perf_counter() - started)


def bench_baseline_append(directory: Path, count: int) -> float:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "plain.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    started = time.perf_counter()
    for i in range(count):
        os.write(fd, json.dumps({"event": "action.transition", **_fields(i)}).encode() + b"\n")
        if i % 64 == 63:
            os.fsync(fd)
    os.fsync(fd)
    os.close(fd)
    return count / (time.perf_counter() - started)


def generate(directory: Path, count: int, key_path: Path, checkpoint_every: int = 1000) -> None:
    """Write ``count`` records in the exact on-disk format (faster than AuditLog for a 1 M-record fixture)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = load_private_key(key_path)
    fp = fingerprint(public_raw(key))
    prev, seq = GENESIS_HASH, 0
    with (directory / segment_name("2026-11-23")).open("wb", buffering=1 << 20) as out:
        while seq < count:
            seq += 1
            if seq % checkpoint_every == 0:
                body = {"event": "audit.checkpoint", "covers_seq": seq - 1, "covers_hash": prev,
                        "key_fingerprint": fp, "signature": sign_checkpoint(key, seq - 1, prev)}
            else:
                body = {"event": "action.transition", **_fields(seq)}
            body.update(seq=seq, prev_hash=prev, ts=f"2026-11-23T10:00:00.{seq % 1000000:06d}Z",
                        actor="bench", host="bench", pid=1, v=2)  # the record version AuditLog writes
            line, prev = encode_line(body)
            out.write(line)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the verify workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_parse_only(directory: Path) -> float:
    started, count = time.perf_counter(), 0
    for path in sorted(directory.glob("audit-*.jsonl")):
        with path.open("rb") as handle:
            for line in handle:
                json.loads(line)
                count += 1
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records for the verify benchmark")
    parser.add_argument("--write-records", type=int, default=50_000, help="records for the append benchmark")
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    try:
        key = base / "audit.key"
        public, _ = generate_keypair(key)
        n = args.write_records
        baseline = bench_baseline_append(base / "plain", n)
        durable = bench_append(base / "a1", n, 1, key)
        threaded = bench_append(base / "a2", n, args.threads, key)
        strict = bench_append(base / "a3", min(n, 5000), 1, key, fsync_every=1)
        print(f"append, bare json+fsync/64 baseline : {baseline:9.0f} records/s")
        print(f"append, AuditLog fsync/64 1 thread   : {durable:9.0f} records/s  "
              f"(ratio {durable / baseline:.2f} of baseline; target ≥ {TARGET_APPEND:.0f}: "
              f"{'MET' if durable >= TARGET_APPEND else 'NOT MET'})")
        print(f"append, AuditLog fsync/64 {args.threads} threads  : {threaded:9.0f} records/s")
        print(f"append, AuditLog fsync every record  : {strict:9.0f} records/s  (for comparison)")

        generated = time.perf_counter()
        generate(base / "v", args.records, key)
        size = sum(p.stat().st_size for p in (base / "v").glob("*.jsonl"))
        print(f"verify fixture: {args.records} records, {size / 1e6:.0f} MB "
              f"(generated in {time.perf_counter() - generated:.1f} s)")
        floor = bench_parse_only(base / "v")
        started, cpu = time.perf_counter(), _cpu()
        report = verify(base / "v", public_key=public)  # as `agent audit verify` runs: workers on a big log
        elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
        assert report.ok, report.render()
        rate = report.records / elapsed
        print(f"verify, parse-only baseline          : {floor:9.0f} records/s")
        print(f"verify, chain + {report.checkpoints_verified} signatures        : "
              f"{rate:9.0f} records/s  ({elapsed:.1f} s total, {cpu:.1f} CPU-s in all processes; ratio "
              f"{rate / floor:.2f} of parse-only; target ≥ {TARGET_VERIFY:.0f}: "
              f"{'MET' if rate >= TARGET_VERIFY else 'NOT MET'})")
        started, cpu = time.perf_counter(), _cpu()
        single = verify(base / "v", public_key=public, workers=1)
        single_wall, single_cpu = time.perf_counter() - started, _cpu() - cpu
        print(f"verify, one process                  : {single.records / single_wall:9.0f} records/s wall, "
              f"{single.records / single_cpu:.0f} per CPU-second (the cost with a core to itself; load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        anchor = TrustAnchor(fingerprint=report.key_fingerprint, seq=report.last_checkpoint_seq,
                             hash=report.last_checkpoint_hash)
        started = time.perf_counter()
        anchored = verify(base / "v", public_key=public, anchor=anchor)
        anchored_rate = anchored.records / (time.perf_counter() - started)
        assert anchored.ok, anchored.render()
        print(f"verify with a trust anchor           : {anchored_rate:9.0f} records/s")
        return 0 if durable >= TARGET_APPEND and rate >= TARGET_VERIFY else 1
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
