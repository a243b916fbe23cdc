"""`agent daemon` alert intake under load, and alert → verified isolation latency on a real lab host.

Part 1 (no root needed): a real ``agent daemon`` process on loopback; a load generator (asyncio, keep-alive
connections) posts N signed Wazuh alerts — half naming a new host, half duplicates — matched by a ``dry-run``
rule, so plans are built and recorded but no target is touched. Reported: accepted alerts/s, p50/p99 latency,
the ratio against ``GET /healthz`` from the same generator in the same run (the HTTP stack's floor), and a count
check that every accepted (202) alert is in the store. Target ≥ 1000 alerts/s, p99 < 50 ms. The dispatcher decides
in the background (plans built and recorded after the 202), so the end-to-end figure is printed too: seconds until
no stored alert waits for its decision, and the daemon's CPU seconds per alert until then. The generator shares
the machine's cores with the daemon; the CPU seconds each side used during the alert phase are reported, and so
are those of every other process on the machine (another job running at the same time shows up there, and
explains a slow run).

Part 2 (root, lab): one Wazuh alert naming ``victim`` → the isolation is applied and verified on the target;
reported: time from POST to the action's ``done`` in the journal (target ≤ 1 s).

Part 1b (no root needed): durability — alerts posted while the daemon is killed with SIGKILL part-way; every
alert that was answered 202 must be in the store afterwards (the answer is only sent after the commit).

Baseline in the same run: ``--baseline DIR`` runs part 1 also against another checkout of this repository
(e.g. ``git worktree add --detach ../old COMMIT``), with this checkout's interpreter and that checkout's sources
first on ``PYTHONPATH`` (and as the daemon's working directory), alternating old and new runs so both see the
same machine load; a checkout from before replay protection gets body-only signatures. Printed per side: alerts/s,
p99, decided/s and the daemon's CPU per alert until all are decided, then new/old ratios (the issue's bar:
throughput no more than 10% below the baseline). CPU per alert is the steadier figure on a shared machine:
throughput and latency move with whatever else runs, CPU per alert much less. ``make bench`` passes
``$BENCH_ALERTS_BASELINE`` as ``--baseline`` when it is set.

Options: ``--alerts N`` (default 5000), ``--concurrency C`` (default 32), ``--runs R`` (default 1: repeat part 1
with a fresh daemon R times and also print the median run), ``--kill-after K`` (default 500 acknowledged alerts
before SIGKILL; 0 skips part 1b), ``--baseline DIR``, ``--no-lab``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"  # shipped as package data
sys.path.insert(0, str(REPO))

SECRET = "bench-wazuh-secret"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checkouts import Tree, baseline_tree, this_tree  # noqa: E402 - bench/ is not a package
from cpu_meter import CpuMeter  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(tmp: Path, hosts: int, port: int, policy: str = "dry-run", runbooks: Path = RUNBOOKS) -> Path:
    inv = ["management:\n  addresses: [10.99.0.10]\nhosts:\n"]
    inv += [f"  h{i:05d}: {{address: 10.98.{i // 250}.{i % 250 + 1}, os: linux, credentials: "
            f"{{username: root, private_key: file:/nonexistent}}}}\n" for i in range(hosts)]
    (tmp / "inventory.yaml").write_text("".join(inv))
    (tmp / "rules.yaml").write_text(
        "rules:\n  - name: bench\n    match: {source: wazuh, rule_id: '5712'}\n    runbook: isolate-host\n"
        f"    params: {{capture_evidence: false}}\n    policy: {policy}\n")
    (tmp / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {runbooks}\ndatabase: agent.db\naudit_dir: audit\n"
        "rules: rules.yaml\n"
        f"daemon:\n  listen: 127.0.0.1:{port}\n  sources:\n    wazuh: {{format: wazuh, hmac_secret: env:BENCH_HMAC}}\n")
    return tmp / "agent.yaml"


def alert_body(host: str, n: int) -> bytes:
    return json.dumps({"timestamp": "2026-11-23T03:12:44.118+0000", "id": f"1795397564.{n}",
                       "rule": {"level": 10, "id": "5712", "description": "sshd: brute force then success",
                                "groups": ["sshd", "authentication_success"]},
                       "agent": {"id": "003", "name": host}, "data": {"srcip": "203.0.113.7", "dstuser": "alice"},
                       "location": "/var/log/auth.log"}).encode()


def request(path: str, body: bytes | None, stamped: bool = True) -> bytes:
    """A raw HTTP/1.1 request; alerts signed as replay-protected senders sign them (timestamp + nonce + body),
    or over the body alone for a baseline from before replay protection (``stamped=False``)."""
    if body is None:
        return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    stamp, nonce = int(time.time()), os.urandom(8).hex()
    signed = f"{stamp}.{nonce}.".encode() + body if stamped else body
    sig = "sha256=" + hmac.new(SECRET.encode(), signed, hashlib.sha256).hexdigest()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"X-Agent-Timestamp: {stamp}\r\nX-Agent-Nonce: {nonce}\r\n"
            f"X-Agent-Signature: {sig}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def load(port: int, requests: list[bytes], concurrency: int) -> tuple[float, list[float], dict[int, int]]:
    """Send every request over ``concurrency`` keep-alive connections; returns (seconds, latencies, statuses)."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    chunks = [requests[i::concurrency] for i in range(concurrency)]

    async def worker(items: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for req in items:
            t0 = time.perf_counter()
            writer.write(req)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in chunks if c))
    return time.perf_counter() - start, latencies, statuses


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def wait_decided(engine: Any, posted_s: float, deadline: float) -> float:
    """Seconds from the first post until no stored alert waits for its decision (disposition ``accepted``)."""
    from sqlalchemy import text
    start = time.monotonic() - posted_s
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM alerts WHERE disposition = 'accepted' LIMIT 1")).first():
                break
        time.sleep(0.02)
    return time.monotonic() - start


def intake(n: int, concurrency: int, tree: Tree | None = None) -> dict[str, float] | None:
    """Part 1 once, with a fresh daemon of ``tree``; the figures, or None when it could not run or lost an alert."""
    tree = tree or this_tree()
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    port = free_port()
    hosts = max(1, n // 2)
    cfg = write_config(tmp, hosts, port, runbooks=tree.runbooks)
    env = {**os.environ, "BENCH_HMAC": SECRET, "NO_COLOR": "1", **tree.env}
    log = open(tmp / "daemon.log", "w")  # noqa: SIM115 - closed below
    # cwd: the daemon starts its front with ``python -m``, which puts the working directory first on sys.path
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "agent"), "daemon", "-c", str(cfg)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    print((tmp / "daemon.log").read_text())
                    return None
                time.sleep(0.05)
        rng = random.Random(7)
        names = [f"h{i:05d}" for i in range(hosts)]
        order = names + [rng.choice(names) for _ in range(n - hosts)]  # every host once (new) + duplicates
        rng.shuffle(order)
        posts = [request("/alerts/wazuh", alert_body(h, i), tree.stamped) for i, h in enumerate(order)]
        asyncio.run(load(port, [request("/healthz", None)] * 500, concurrency))  # warm-up
        base_s, base_lat, _ = asyncio.run(load(port, [request("/healthz", None)] * n, concurrency))
        meter = CpuMeter(proc.pid)
        meter.start()
        secs, lat, statuses = asyncio.run(load(port, posts, concurrency))
        cpu = meter.stop()
        accepted = statuses.get(202, 0)
        rate, base_rate = max(accepted, 1) / secs, n / base_s  # max: a run that stored nothing still prints
        from sqlalchemy import create_engine, text
        engine = create_engine(f"sqlite:///{tmp / 'agent.db'}")
        decided_s = wait_decided(engine, secs, deadline=time.monotonic() + 120)
        total = meter.stop()  # the dispatcher decides in the background: its work ends after the last 202
        time.sleep(0.5)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT count(*) FROM alerts")).scalar()
            deduped = conn.execute(text("SELECT count(*) FROM alerts WHERE disposition = 'deduped'")).scalar()
        engine.dispose()
        print(f"[{tree.label}: {tree.root}]")
        print(f"GET /healthz (HTTP floor)      {base_rate:8.0f} req/s   p50 {pct(base_lat, .5) * 1000:6.2f} ms   "
              f"p99 {pct(base_lat, .99) * 1000:6.2f} ms (baseline)")
        print(f"POST /alerts/wazuh              {rate:8.0f} alerts/s p50 {pct(lat, .5) * 1000:6.2f} ms   "
              f"p99 {pct(lat, .99) * 1000:6.2f} ms   ratio {base_rate / rate:4.2f}x of the floor   "
              f"(target >= 1000/s, p99 < 50 ms)")
        print(f"  {n} posted over {concurrency} connections: statuses {statuses}; {hosts} new hosts, "
              f"{deduped} deduped; stored {stored} == accepted {accepted}: "
              f"{'OK' if stored == accepted else 'MISMATCH'}")
        print(f"  every alert decided {decided_s:.2f} s after the first post ({n / decided_s:.0f}/s end to end), "
              f"daemon CPU until then {total['daemon']:.2f} s = {total['daemon'] / n * 1e6:.0f} us per alert")
        parts = ", ".join(f"{k[7:]} {v:.2f}" for k, v in cpu.items() if k.startswith("daemon."))
        print(f"  CPU seconds while posting ({secs:.2f} s on {os.cpu_count()} cores): daemon {cpu['daemon']:.2f} "
              f"({cpu['daemon'] / n * 1e6:.0f} us per alert; {parts}), generator {cpu['generator']:.2f}, "
              f"other processes {cpu['others']:.2f}")
        if stored != accepted or statuses.get(202, 0) != n:
            return None
        return {"rate": rate, "p50": pct(lat, .5) * 1000, "p99": pct(lat, .99) * 1000, "floor": base_rate,
                "others": cpu["others"], "cpu_us": total["daemon"] / n * 1e6, "decided": n / decided_s}
    finally:
        proc.terminate()
        proc.wait(60)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def sigkill_durability(n: int, kill_after: int, concurrency: int) -> bool:
    """Part 1b: SIGKILL the daemon after ``kill_after`` acknowledgements; every acknowledged alert must be stored."""
    import signal
    tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-kill-"))
    port = free_port()
    cfg = write_config(tmp, max(1, n // 2), port)
    env = {**os.environ, "BENCH_HMAC": SECRET, "NO_COLOR": "1"}
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "agent"), "daemon", "-c", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    acked: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    return False
                time.sleep(0.05)
        posts = [request("/alerts/wazuh", alert_body(f"h{i % (n // 2):05d}", i)) for i in range(n)]

        async def worker(items: list[bytes]) -> None:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                for req in items:
                    writer.write(req)
                    line = await reader.readline()
                    if not line:
                        return
                    status = int(line.split()[1])
                    length = 0
                    while (h := await reader.readline()) not in (b"\r\n", b""):
                        if h.lower().startswith(b"content-length:"):
                            length = int(h.split(b":")[1])
                    body = await reader.readexactly(length)
                    if status == 202:
                        acked.append(json.loads(body)["alert_id"])
                        if len(acked) == kill_after:
                            os.killpg(proc.pid, signal.SIGKILL)  # the core and its HTTP front, mid-storm
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                return

        async def run() -> None:
            chunks = [posts[i::concurrency] for i in range(concurrency)]
            await asyncio.gather(*(worker(c) for c in chunks if c))
        asyncio.run(run())
        proc.wait(30)
        from sqlalchemy import create_engine, text
        engine = create_engine(f"sqlite:///{tmp / 'agent.db'}")
        with engine.connect() as conn:
            stored = {r[0] for r in conn.execute(text("SELECT id FROM alerts"))}
        engine.dispose()
        lost = [a for a in acked if a not in stored]
        print(f"SIGKILL after {kill_after} acknowledgements: {len(acked)} acknowledged (202), {len(stored)} stored, "
              f"{len(lost)} acknowledged alerts lost (target 0): {'OK' if not lost else 'LOST'}")
        return not lost
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


def lab_latency(rounds: int = 3) -> None:
    from sqlalchemy import select

    from agent.app import App
    from agent.daemon import Daemon
    from agent.lab import Lab
    from agent.store import Action
    lab = Lab(prefix="cbd")
    lab.up()
    try:
        results = []
        for r in range(rounds):
            lab.reset()
            tmp = Path(tempfile.mkdtemp(prefix="bench-daemon-lab-"))
            shutil.copy(lab.config_dir / "inventory.yaml", tmp / "inventory.yaml")
            (tmp / "rules.yaml").write_text(
                "rules:\n  - name: bench\n    match: {source: wazuh, rule_id: '5712'}\n    runbook: isolate-host\n"
                "    params: {capture_evidence: false}\n")
            (tmp / "agent.yaml").write_text(
                f"inventory: inventory.yaml\nrunbooks: {RUNBOOKS}\ndatabase: agent.db\naudit_dir: audit\n"
                f"rules: rules.yaml\nssh: {{known_hosts: {lab.state_dir / 'known_hosts'}}}\n"
                "daemon:\n  listen: 127.0.0.1:0\n  sources:\n    wazuh: {format: wazuh, hmac_secret: env:BENCH_HMAC}\n")
            os.environ["BENCH_HMAC"] = SECRET
            app = App(config_path=tmp / "agent.yaml", actor="bench")
            with lab.enter("mgmt"):
                daemon = Daemon(app).start_in_thread()
                port = daemon.port
                body = alert_body("victim", r)
                t0 = time.perf_counter()
                asyncio.run(load(port, [request("/alerts/wazuh", body)], 1))
                while True:
                    with app.store.session() as s:
                        row = s.scalar(select(Action).where(Action.state.in_(("done", "failed"))))
                    if row is not None:
                        break
                    time.sleep(0.005)
                took = time.perf_counter() - t0
                daemon.stop()
            app.close()
            shutil.rmtree(tmp, ignore_errors=True)
            if row.state != "done":
                print(f"  round {r}: isolation failed: {row.error}")
                return
            results.append(took)
        med = statistics.median(results)
        print(f"alert -> verified isolation (victim, real sshd + nft)  median {med * 1000:6.0f} ms over {rounds} "
              f"rounds (target <= 1000 ms)")
    finally:
        lab.reset()
        lab.down()


def summary(label: str, runs: list[dict[str, float]]) -> dict[str, float]:
    """The median run by throughput (and the median CPU per alert over all runs), printed when there are several."""
    mid = dict(sorted(runs, key=lambda r: r["rate"])[len(runs) // 2])
    mid["cpu_us"] = statistics.median(r["cpu_us"] for r in runs)
    mid["decided"] = statistics.median(r["decided"] for r in runs)
    if len(runs) > 1:
        p99s = ", ".join(f"{r['p99']:.1f}" for r in runs)
        others = ", ".join(f"{r['others']:.1f}" for r in runs)
        print(f"{label}median of {len(runs)} runs: {mid['rate']:.0f} alerts/s, p50 {mid['p50']:.2f} ms, "
              f"p99 {mid['p99']:.2f} ms, {mid['decided']:.0f} decided/s, daemon CPU {mid['cpu_us']:.0f} us per alert "
              f"(p99 per run: {p99s} ms; "
              f"other processes' CPU per run: {others} s)")
    return mid


def compare(new: dict[str, float], old: dict[str, float]) -> bool:
    """New against the baseline measured in this run; True when throughput is at most 10% below it."""
    ok = new["rate"] >= 0.9 * old["rate"]
    print(f"new vs old (same run): {new['rate']:.0f} vs {old['rate']:.0f} alerts/s = "
          f"{new['rate'] / old['rate']:.2f}x (bar >= 0.90: {'OK' if ok else 'BELOW'}); p99 {new['p99']:.1f} vs "
          f"{old['p99']:.1f} ms = {new['p99'] / old['p99']:.2f}x; decided end to end {new['decided']:.0f} vs "
          f"{old['decided']:.0f}/s = {new['decided'] / old['decided']:.2f}x; daemon CPU per alert (until all decided) "
          f"{new['cpu_us']:.0f} vs {old['cpu_us']:.0f} us = {new['cpu_us'] / old['cpu_us']:.2f}x")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=int(os.environ.get("BENCH_ALERTS", "5000")))
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--runs", type=int, default=1, help="repeat part 1 with a fresh daemon; print the median")
    parser.add_argument("--kill-after", type=int, default=500, help="part 1b: SIGKILL after K acks (0: skip)")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure in the same run (part 1)")
    parser.add_argument("--no-lab", action="store_true")
    args = parser.parse_args()
    trees = [this_tree()] + ([baseline_tree(args.baseline)] if args.baseline else [])
    runs: dict[str, list[dict[str, float]]] = {t.label: [] for t in trees}
    ok = True
    for i in range(max(1, args.runs)):
        for tree in trees if i % 2 else trees[::-1]:  # old, new, new, old, ...: both meet the same load
            result = intake(args.alerts, args.concurrency, tree)
            if result is None:
                ok = False
                break
            runs[tree.label].append(result)
        if not ok:
            break
    if ok:
        mids = {label: summary(f"{label}: " if args.baseline else "", r) for label, r in runs.items()}
        if args.baseline:
            compare(mids["new"], mids["old"])  # printed for the reader; the exit status is about correctness
    if ok and args.kill_after > 0:
        ok = sigkill_durability(max(args.kill_after * 2, 1000), args.kill_after, args.concurrency)
    if not args.no_lab and os.geteuid() == 0 and shutil.which("sshd", path="/usr/sbin:/usr/bin"):
        lab_latency()
    return 0 if ok else 1

if __name__ == "__main__":
    sys.exit(main())
