"""The daemon's alert path in one process, counted in instructions: this checkout against a baseline checkout.

Why: on a shared machine (2 cores, several engineers) the intake bench's alerts/s and p99 move with whatever else
runs; the CPU work per alert does not. Under valgrind's callgrind the instruction count of the same work is
deterministic, so a change's cost shows even on a loaded machine (compare counts, not seconds).

What runs, for N signed Wazuh alerts as in ``bench/daemon_alerts.py`` (half naming a new host, half duplicates,
matched by a dry-run rule): the front's half of each request (signature, JSON, normalisation, rule match), then
the core's — decide (dedupe claim in memory), the group-committed INSERTs, the 202 answer's encoding, and the
dispatcher's decision (the plan built and recorded in the audit log, its bookkeeping through the writer) — in
batches of 32 as from 32 connections, on one thread. Not included: HTTP, the front↔core link, thread hand-offs,
fsync waits (those are I/O, not instructions). The rule must stay dry-run: a decision that waits for the writer
(an acting incident's claim) would wait here for a writer thread that is not running. Printed: instructions per
alert of each checkout and the ratio; without valgrind, CPU microseconds per alert (noisy).

Usage: ``python bench/alert_path.py [--alerts N] [--baseline DIR]`` (DIR: a checkout of the code before a change,
e.g. ``git worktree add --detach ../old COMMIT``; run with this checkout's interpreter, its sources first on
``PYTHONPATH``). ``make bench`` passes ``$BENCH_ALERTS_BASELINE``.
"""

from __future__ import annotations

import argparse
import inspect
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import daemon_alerts as da  # noqa: E402 - the same configuration, alerts and signatures as the intake bench

BATCH = 32


def run_path(n: int) -> float:
    """In the child: the alert path for ``n`` alerts; returns CPU seconds (instructions counted meanwhile)."""
    tree = da.Tree(Path(os.environ["BENCH_TREE"]), "x")
    sys.path[:] = [p for p in sys.path if p != str(da.REPO)]
    sys.path.insert(0, str(tree.root))
    tmp = Path(tempfile.mkdtemp(prefix="bench-alert-path-"))
    try:
        cfg = da.write_config(tmp, max(1, n // 2), da.free_port(), runbooks=tree.runbooks)
        os.environ["BENCH_HMAC"] = da.SECRET
        from agent.app import App
        from agent.intake import wire
        from agent.intake import writer as writer_mod
        from agent.intake.config import load_daemon_config
        from agent.intake.request import find_source, parse_alerts
        from agent.intake.service import IntakeService
        app = App(config_path=cfg, actor="bench")
        svc = IntakeService(app, load_daemon_config(app.settings.daemon, app.settings.path), engine=app.engine())
        svc._load_state()  # what IntakeService.start does, without its threads
        svc.dispatcher.preload()
        rng = random.Random(7)
        names = [f"h{i:05d}" for i in range(max(1, n // 2))]
        order = names + [rng.choice(names) for _ in range(n - len(names))]
        rng.shuffle(order)
        requests = []
        for i, host in enumerate(order):
            head, body = da.request("/alerts/wazuh", da.alert_body(host, i), tree.stamped).split(b"\r\n\r\n", 1)
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
            requests.append(({k.lower(): v for k, v in headers.items()}, body))
        source = find_source(svc.sources, "wazuh")
        with_query = len(inspect.signature(parse_alerts).parameters) > 3  # the query string (URL token) is newer
        answer = getattr(writer_mod, "acknowledgement", None)
        toggle(True)
        start = time.process_time()
        for at in range(0, n, BATCH):
            groups = []
            for headers, body in requests[at:at + BATCH]:  # the front
                parsed = parse_alerts(source, headers, body, "") if with_query else parse_alerts(source, headers, body)
                groups.append((parsed, [(r[0].name, r[1]) if (r := svc.rules.route(p.alert, svc.host_tags)) else None
                                        for p in parsed]))
            decided = [svc.decide_all(parsed, time.monotonic(), routes) for parsed, routes in groups]  # the core
            svc.writer.write([d for ds in decided for d in ds])
            for ds in decided:
                wire_answer(wire, answer(ds) if answer else ds[0].answer())
            for ds in decided:  # the dispatcher, its bookkeeping committed as the writer would
                for d in ds:
                    svc.dispatcher.handle(d)
            svc.dispatcher._flush()
            updates = []
            while not svc.writer._queue.empty():
                updates.append(svc.writer._queue.get_nowait())
            svc.writer.write([], [fn for fn, _ in updates])
            for _, fut in updates:
                fut.set_result(None)
        used = time.process_time() - start
        toggle(False)
        getattr(app, "close", lambda: None)()
        return used
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def wire_answer(wire: Any, body: dict[str, Any]) -> bytes:
    """Encode a 202 answer as the core sends it to the front (pickle before the typed link, msgspec since)."""
    if hasattr(wire, "Answer"):
        return bytes(wire.encode(wire.Answer(1, 202, body)))
    return bytes(wire.encode((1, 202, body)))


def toggle(on: bool) -> None:
    """Count instructions only around the alert path (callgrind_control talks to this process's valgrind)."""
    if os.environ.get("BENCH_UNDER_CALLGRIND"):
        subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(os.getpid())], check=True,
                       capture_output=True)


def measure(tree: da.Tree, n: int) -> tuple[int | None, float]:
    """(instructions, CPU seconds) of the alert path of ``tree``; instructions None without valgrind."""
    env = {**os.environ, **tree.env, "BENCH_TREE": str(tree.root), "PYTHONHASHSEED": "0", "AGENT_NO_WARM": "1"}
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", str(n)]
    valgrind = shutil.which("valgrind") if shutil.which("callgrind_control") else None
    if valgrind:
        env["BENCH_UNDER_CALLGRIND"] = "1"
        argv = [valgrind, "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=/dev/null", *argv]
    with tempfile.TemporaryDirectory(prefix="bench-alert-path-cwd-") as cwd:  # python -m: cwd first on sys.path
        out = subprocess.run(argv, check=False, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    found = re.search(r"cpu_seconds=([0-9.]+)", out.stdout)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"{tree.root}: the alert path failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    counted = re.search(r"Collected : (\d+)", out.stderr)
    return (int(counted.group(1)) if counted else None), float(found.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=400)
    parser.add_argument("--baseline", type=Path, help="a checkout of the code before a change")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(f"cpu_seconds={run_path(args.child):.6f}")
        return 0
    trees = [da.this_tree()] + ([da.baseline_tree(args.baseline)] if args.baseline else [])
    results = {}
    for tree in trees:
        instructions, cpu = measure(tree, args.alerts)
        results[tree.label] = (instructions, cpu)
        figure = (f"{instructions / args.alerts / 1e6:.2f} M instructions per alert" if instructions else
                  f"CPU {cpu / args.alerts * 1e6:.0f} us per alert (no valgrind: seconds, noisy)")
        print(f"alert path, {args.alerts} alerts in one process [{tree.label}: {tree.root}]: {figure}")
    if args.baseline and results["new"][0] and results["old"][0]:
        print(f"new vs old (instructions per alert, same run): {results['new'][0] / results['old'][0]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
