"""Start-up of the CLI as a responder feels it: whole processes, cold (no warm server) and warm.

Prints, from one run on this machine (medians of BENCH_ROUNDS, and the fastest run):
- the interpreter's own floor (`python3 -c pass`), `agent --help`, and `python3 -c "import sqlalchemy.orm"`: the
  floor of every command that reads the journal, since each reads it through the one store (issue 21: no second
  query path for a start-up number);
- cold `agent status` (SQLite journal: empty, and with every section of the table — an isolated host with its
  dead-man timer and TTL, a blocked address batch, a disabled account and its password reset, an unblock, an
  action in doubt, an interrupted one) and cold `agent contain --dry-run` of one host (no connection is made:
  dry runs never connect), each as a ratio to the floor — goal: `status` ≤ 0.25 s;
- the same two with `warm: auto` (a warm server started by the first command);
- `ansible --version` as the yardstick of the tool responders would otherwise script (installed into
  var/bench/ansible by bench/run.sh; skipped with a note if absent);
- the machine's load average before and after, and — because 8 people share these 2 cores and wall-clock is
  noisy — the fastest of the rounds for the goal (what a quiet machine gives) and each cold command's
  instruction count under valgrind's callgrind (deterministic: compare these between commits;
  BENCH_INSTRUCTIONS=0 skips them, ≈ 20 s).

Bytecode is compiled first and PYTHONDONTWRITEBYTECODE is dropped: an installed agent has its .pyc files (pip
writes them), and compiling the agent's sources on every run would add ≈ 100 M instructions to each command.
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
SQLA = "import sqlalchemy.orm (journal floor)"
BUSY = "agent status, every section (cold)"
ANSIBLE = [str(REPO / "var" / "bench" / "ansible" / "bin" / "ansible"), shutil.which("ansible") or ""]


def median(argv: list[str], env: dict[str, str], rounds: int) -> float:
    return statistics.median(timed([("", argv, env)], rounds)[""])


def timed(cases: list[tuple[str, list[str], dict[str, str]]], rounds: int) -> dict[str, list[float]]:
    """Each command's run times, the commands taking turns round by round, so a burst of load on this shared
    machine hits them alike."""
    runs: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(rounds):
        for name, argv, env in cases:
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True, capture_output=True, stdin=subprocess.DEVNULL)
            runs[name].append(time.perf_counter() - start)
    return runs


def instructions(argv: list[str], env: dict[str, str]) -> int | None:
    """Instructions one run executes (callgrind's total), or None without valgrind."""
    valgrind = shutil.which("valgrind")
    if not valgrind or os.environ.get("BENCH_INSTRUCTIONS") == "0":
        return None
    out = subprocess.run([valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv], env=env,
                         check=True, capture_output=True, text=True, stdin=subprocess.DEVNULL).stderr
    found = [line.rsplit(":", 1)[1] for line in out.splitlines() if "Collected :" in line]
    return int(found[-1].strip()) if found else None


def contained(db: Path) -> None:
    """A journal with every section a responder's status shows mid-incident (the words of every connector)."""
    from datetime import timedelta

    from agent.store import Action, ActionItem, Incident, Store, Transition, utcnow

    store = Store(f"sqlite:///{db}")
    now = utcnow()
    deadman = {"reverts_at": (now + timedelta(minutes=5)).isoformat(), "cancelled": True}

    def action(seq: int, **kw: object) -> Action:
        return Action(incident_id="INC-BENCH", seq=seq, runbook="bench", step="s", **kw)

    with store.session() as s:
        s.add(Incident(id="INC-BENCH", title="bench"))
        s.flush()
        host = action(1, target="web01", subject="web01", address="127.0.1.21", connector="ssh_linux",
                      action="isolate", state="done", changed=1, expires_at=now + timedelta(hours=2),
                      result={"details": {"deadman": deadman}})
        block = action(2, target="edge1", subject="203.0.113.7", target_kind="device", connector="firewall",
                       action="block_ip", state="done", changed=1)
        rows = [host, block,
                action(3, target="web02", subject="web02", connector="ssh_linux", action="isolate",
                       state="in_doubt", error="connection lost after the load"),
                action(4, target="web03", subject="web03", connector="ssh_linux", action="isolate",
                       state="applying", owner="host:1"),
                action(5, target="lab.test", subject="jdoe", target_kind="account", connector="active_directory",
                       action="disable_account", state="done", changed=1),
                action(6, target="lab.test", subject="jdoe", target_kind="account", connector="active_directory",
                       action="reset_password", state="done", changed=1, reversible=0),
                action(7, target="edge2", subject="198.51.100.4", target_kind="device", connector="firewall",
                       action="unblock_ip", state="done", changed=1)]
        s.add_all(rows)
        s.flush()
        for n, address in enumerate(("203.0.113.7", "203.0.113.8")):
            s.add(ActionItem(action_id=block.id, position=n, kind="address", canonical=f"net:{address}/32",
                             requested=address, state="done", changed=1, undone_at=now if n else None))
        s.add(ActionItem(action_id=host.id, canonical="host:web01", requested="web01", state="done", changed=1))
        for row in (host, block):
            s.add(Transition(action_id=row.id, from_state="verifying", to_state="done", detail="read back"))
    store.close()


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
    base.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed: the agent's bytecode is compiled once
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "agent"), str(REPO / "connectors")],
                   check=False, capture_output=True)
    rows: list[tuple[str, float]] = []
    fastest: dict[str, float] = {}
    counts: dict[str, int | None] = {}
    load_before = os.getloadavg()
    with (tempfile.TemporaryDirectory() as cold_dir, tempfile.TemporaryDirectory() as warm_dir,
          tempfile.TemporaryDirectory() as busy_dir):
        cold_env = {**base, "AGENT_CONFIG": str(config(Path(cold_dir), False)), "AGENT_NO_WARM": "1"}
        busy_env = {**cold_env, "AGENT_CONFIG": str(config(Path(busy_dir), False))}
        contained(Path(busy_dir) / "agent.db")
        subprocess.run([AGENT, "status"], env=cold_env, check=True, capture_output=True)  # create the journal
        cold = [("python3 -c pass (floor)", [sys.executable, "-c", "pass"], base),
                (SQLA, [sys.executable, "-c", "import sqlalchemy.orm"], base),
                ("agent --help", [AGENT, "--help"], cold_env),
                ("agent status (cold)", [AGENT, "status"], cold_env),
                (BUSY, [AGENT, "status"], busy_env),
                ("agent contain --dry-run (cold)", [AGENT, "contain", "--host", "web01", "--dry-run"], cold_env)]
        for name, runs in timed(cold, rounds).items():
            rows.append((name, statistics.median(runs)))
            fastest[name] = min(runs)
        for name, argv, env in cold:
            if name != "agent --help":
                counts[name] = instructions(argv if argv[0] == sys.executable else [sys.executable, *argv], env)
        floor = dict(rows)["python3 -c pass (floor)"]
        run_dir = Path(warm_dir) / "run"
        warm_env = {**base, "AGENT_CONFIG": str(config(Path(warm_dir), True)), "AGENT_RUN_DIR": str(run_dir),
                    "AGENT_WARM_IDLE_EXIT": "30"}
        subprocess.run([AGENT, "status"], env=warm_env, check=True, capture_output=True)  # starts the server
        deadline = time.monotonic() + 30
        while not (run_dir.exists() and any(run_dir.glob("warm-*.sock"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        warm = [("agent status (warm: auto)", [AGENT, "status"], warm_env),
                ("agent contain --dry-run (warm: auto)", [AGENT, "contain", "--host", "web01", "--dry-run"],
                 warm_env)]
        for name, runs in timed(warm, rounds).items():
            rows.append((name, statistics.median(runs)))
            fastest[name] = min(runs)
    ansible = next((a for a in ANSIBLE if a and Path(a).exists()), None)
    if ansible:
        rows.append(("ansible --version", median([ansible, "--version"], base, rounds)))
    width = max(len(r[0]) for r in rows)
    print(f"{'command':<{width}}  {'median':>8}  {'fastest':>8}  {'× floor':>7}  {'instructions':>12}")
    for name, seconds in rows:
        count = counts.get(name)
        shown = f"{count / 1e6:10.0f} M" if count else ""
        best = f"{fastest[name] * 1000:5.0f} ms" if name in fastest else ""
        print(f"{name:<{width}}  {seconds * 1000:5.0f} ms  {best:>8}  {seconds / floor:6.1f}×  {shown:>12}")
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in load_before)}; after: "
          f"{', '.join(f'{v:.2f}' for v in load_after)} on {os.cpu_count()} CPUs")
    status = dict(rows)["agent status (cold)"]
    if ansible:
        print(f"agent status (cold) / ansible --version: {status / dict(rows)['ansible --version']:.2f}×")
    else:
        print("ansible not installed here (bench/run.sh installs it into var/bench/ansible): no yardstick")
    above = {name: 1000 * (fastest[name] - fastest[SQLA]) for name in ("agent status (cold)", BUSY)}
    print(f"above `import sqlalchemy.orm` (fastest runs): status {above['agent status (cold)']:.0f} ms, every "
          f"section {above[BUSY]:.0f} ms; SQLAlchemy's import alone is "
          f"{dict(rows)[SQLA] / dict(rows)['agent status (cold)']:.0%} of the cold status (medians)")
    for name in ("agent status (cold)", BUSY):
        took, best = dict(rows)[name], fastest[name]
        print(f"goal: cold `{name.split(' (')[0]}` ≤ 250 ms on a quiet machine — fastest of {rounds} "
              f"{best * 1000:.0f} ms: {'met' if best <= 0.25 else 'NOT met'} "
              f"(median {took * 1000:.0f} ms at this load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
