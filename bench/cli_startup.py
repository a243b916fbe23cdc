"""Start-up of the CLI as a responder feels it: whole processes, cold (no warm server) and warm.

Prints, from one run on this machine (medians of BENCH_ROUNDS):
- the interpreter's own floor (`python3 -c pass`) and `agent --help`;
- cold `agent status` (SQLite journal) and cold `agent contain --dry-run` of one host (no connection is made:
  dry runs never connect), each as a ratio to the floor — goal: `status` ≤ 0.25 s;
- the same two with `warm: auto` (a warm server started by the first command);
- `ansible --version` as the yardstick of the tool responders would otherwise script (installed into
  var/bench/ansible by bench/run.sh; skipped with a note if absent).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"  # shipped as package data
CONFIG = REPO / "agent" / "data" / "config"  # the annotated example configuration
AGENT = str(REPO / ".venv" / "bin" / "agent")
ANSIBLE = [str(REPO / "var" / "bench" / "ansible" / "bin" / "ansible"), shutil.which("ansible") or ""]


def median(argv: list[str], env: dict[str, str], rounds: int) -> float:
    runs = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def config(tmp: Path, warm: bool) -> Path:
    (tmp / "inventory.yaml").write_text(
        "management: {addresses: [192.0.2.10]}\n"
        "defaults:\n  ssh_linux:\n    credentials: {username: root, private_key: file:/nonexistent/key}\n"
        "hosts:\n  web01: {address: 127.0.1.21, os: linux}\n")
    (tmp / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {RUNBOOKS}\ndatabase: agent.db\naudit_dir: audit\n"
        "evidence_dir: evidence\n" + ("warm: auto\n" if warm else ""))
    return tmp / "agent.yaml"


def main() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", "7"))
    base = {**os.environ, "NO_COLOR": "1"}
    base.pop("AGENT_NO_WARM", None)
    rows: list[tuple[str, float]] = []
    floor = median([sys.executable, "-c", "pass"], base, rounds)
    rows.append(("python3 -c pass (floor)", floor))
    with tempfile.TemporaryDirectory() as cold_dir, tempfile.TemporaryDirectory() as warm_dir:
        cold_env = {**base, "AGENT_CONFIG": str(config(Path(cold_dir), False)), "AGENT_NO_WARM": "1"}
        rows.append(("agent --help", median([AGENT, "--help"], cold_env, rounds)))
        subprocess.run([AGENT, "status"], env=cold_env, check=True, capture_output=True)  # create the journal
        rows.append(("agent status (cold)", median([AGENT, "status"], cold_env, rounds)))
        rows.append(("agent contain --dry-run (cold)",
                     median([AGENT, "contain", "--host", "web01", "--dry-run"], cold_env, rounds)))
        run_dir = Path(warm_dir) / "run"
        warm_env = {**base, "AGENT_CONFIG": str(config(Path(warm_dir), True)), "AGENT_RUN_DIR": str(run_dir),
                    "AGENT_WARM_IDLE_EXIT": "30"}
        subprocess.run([AGENT, "status"], env=warm_env, check=True, capture_output=True)  # starts the server
        deadline = time.monotonic() + 30
        while not (run_dir.exists() and any(run_dir.glob("warm-*.sock"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        rows.append(("agent status (warm: auto)", median([AGENT, "status"], warm_env, rounds)))
        rows.append(("agent contain --dry-run (warm: auto)",
                     median([AGENT, "contain", "--host", "web01", "--dry-run"], warm_env, rounds)))
    ansible = next((a for a in ANSIBLE if a and Path(a).exists()), None)
    if ansible:
        rows.append(("ansible --version", median([ansible, "--version"], base, rounds)))
    width = max(len(r[0]) for r in rows)
    print(f"{'command':<{width}}  {'median':>8}  {'× floor':>7}")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds * 1000:7.0f} ms  {seconds / floor:6.1f}×")
    status = dict(rows)["agent status (cold)"]
    if ansible:
        print(f"agent status (cold) / ansible --version: {status / dict(rows)['ansible --version']:.2f}×")
    else:
        print("ansible not installed here (bench/run.sh installs it into var/bench/ansible): no yardstick")
    print(f"goal: cold `agent status` ≤ 250 ms — {'met' if status <= 0.25 else 'NOT met'} ({status * 1000:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
