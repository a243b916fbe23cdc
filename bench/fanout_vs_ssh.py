"""Fan-out on one machine (issue 19): ``agent contain --tag fleet`` + ``agent release`` of N lab hosts against two
raw-``ssh`` baselines with the same parallelism (``xargs -P``), in the same run:

- **minimal**: one ``nft -f -`` (the agent's ruleset) and one ``nft delete table`` per host, one login each;
- **same work**: OpenSSH replaying, per host and in the same order, exactly the logins, commands (prelude
  included) and stdin the agent sent for contain and release — recorded from the agent itself
  (bench/record_sent.py, an untimed contain + release before the timed runs), so the two cannot drift. Each of the
  agent's connections is one OpenSSH ControlMaster login (``-M -f -N``) and each command one channel on it
  (``-S``), closed where the agent closed it; the replayed confirm cancels the dead-man timer the replayed load
  armed (same token), the replayed release removes what the replayed contain installed. The difference between
  the agent and this side is what the agent itself adds (Python, paramiko, journal, planning).

And the CPU-seconds per host of each side: the agent's (user + system of the command and its children) against
the ssh clients' (ControlMasters included: the bench is their subreaper and reaps them), and what each caused on
the targets (their sshd listeners' trees: every connection's sshd, shell and tool), since the lab's hosts share
this machine's cores.

    python bench/fanout_vs_ssh.py [--hosts 50] [--parallel 8] [--runs 2]

Target (issue 19): ≤ 1.0× raw ssh; the issue measured 1.92× (minimal) and ~0.05 CPU-s per host before. Evidence
capture is off for the agent; against the minimal side it additionally snapshots, verifies from the target, arms
and cancels the dead-man timer through a second (fresh) connection, cuts live flows and journals every step.
docs/workers.md "Fan-out on one machine" has where the time goes.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import shlex
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.lab import Lab  # noqa: E402
from agent.lab.topology import fleet_names  # noqa: E402
from connectors.ssh_linux.privilege import STATE_DIRS  # noqa: E402
from connectors.ssh_linux.rules import TABLE, nft_script  # noqa: E402
from tests.slots import claim  # noqa: E402

RULESET = nft_script([ipaddress.ip_network("10.77.0.10/32")], 22)  # exactly what the agent applies
PR_SET_CHILD_SUBREAPER = 36  # prctl(2): orphaned descendants (the replay's ControlMasters) are reparented to us


def target_cpu(pids: Sequence[int]) -> float:
    """CPU seconds the targets' sshd listeners and everything they reaped used so far (utime + stime + cutime +
    cstime): every connection's sshd, the shells and tools each command ran. The lab's hosts share this machine's
    two cores with the agent, so this is the other half of what a fan-out costs here."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def measured(argv: list[str], *, input: str | None = None, env: dict[str, str] | None = None,
             targets: Sequence[int] = ()) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the process tree, CPU seconds on the targets) of one command; raises on
    failure."""
    before, target_before = resource.getrusage(resource.RUSAGE_CHILDREN), target_cpu(targets)
    start = time.perf_counter()
    res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=1800, env=env, check=False)
    wall = time.perf_counter() - start
    reap_orphans()
    after, target_after = resource.getrusage(resource.RUSAGE_CHILDREN), target_cpu(targets)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-4:])} exited {res.returncode}: {res.stdout[-800:]}{res.stderr[-800:]}")
    return (wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            target_after - target_before)


def reap_orphans(limit: float = 10.0) -> None:
    """Wait for the descendants that were reparented to this process (ssh ControlMasters that forked into the
    background), so their CPU lands in RUSAGE_CHILDREN like every other ssh client's."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def replay_scripts(record: Path, out_dir: Path, ssh: str) -> tuple[list[Path], int, int]:
    """One shell script per host that replays, in order, what the agent's record says it sent that host: each
    connection a ControlMaster login, each command a channel on it with the same text and stdin. Returns the
    scripts, the number of logins and of commands."""
    per_host: dict[str, list[dict[str, object]]] = {}
    for line in record.read_text().splitlines():
        event = json.loads(line)
        per_host.setdefault(str(event["address"]), []).append(event)
    out_dir.mkdir(parents=True, exist_ok=True)
    scripts, logins, commands = [], 0, 0
    for h, (address, events) in enumerate(sorted(per_host.items())):
        lines, open_conns = ["#!/bin/sh"], []
        for e, event in enumerate(events):
            sock = f"{out_dir}/{h}-{event['conn']}"
            dest = f"-p {event['port']} -o ControlPath={sock} {shlex.quote(str(event['user']))}@{address}"
            if event["event"] == "open":
                logins += 1
                open_conns.append(dest)
                lines.append(f"{ssh} -o ControlMaster=yes -f -N {dest}")
            elif event["event"] == "run":
                commands += 1
                stdin = "/dev/null"
                if event["stdin"] is not None:
                    stdin = f"{out_dir}/{h}-{e}.in"
                    Path(stdin).write_text(str(event["stdin"]))
                lines.append(f"{ssh} {dest} {shlex.quote(str(event['command']))} < {stdin} > /dev/null 2>&1")
            elif dest in open_conns:
                open_conns.remove(dest)
                lines.append(f"{ssh} -O exit {dest} 2>/dev/null")
        lines += [f"{ssh} -O exit {dest} 2>/dev/null" for dest in open_conns]  # the agent left it to the exit
        script = out_dir / f"{h}.sh"
        script.write_text("\n".join(lines) + "\n")
        scripts.append(script)
    return scripts, logins, commands


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--parallel", type=int, default=8, help="engine.max_parallel and xargs -P")
    ap.add_argument("--runs", type=int, default=2, help="contain+release and raw ssh, this many times (noise)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("fanout_vs_ssh: needs root (the lab)", file=sys.stderr)
        return 2
    hosts = fleet_names(args.hosts)
    with claim(["cbf", "cbf2", "cbf3"], "bench lab prefixes") as prefix:
        lab = Lab(prefix=prefix, fleet=args.hosts)
        lab.up(rebuild=True)
        try:
            return bench(lab, hosts, args.parallel, args.runs)
        finally:
            lab.down()


def bench(lab: Lab, hosts: list[str], parallel: int, runs: int = 1) -> int:
    ns = ["ip", "netns", "exec", lab.hosts["mgmt"].namespace]
    cfg = lab.config_dir / "agent.yaml"
    text = cfg.read_text().replace("max_parallel: 8", f"max_parallel: {parallel}")
    bench_cfg = cfg.with_name("agent-fanout.yaml")
    bench_cfg.write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(AGENT_CONFIG=str(bench_cfg), NO_COLOR="1", AGENT_NO_WARM="1")
    agent = [*ns, str(REPO / ".venv" / "bin" / "agent")]
    n = str(len(hosts))
    pids = [int((lab.host_dir(h) / "sshd.pid").read_text().split()[0]) for h in hosts]
    one = measured([*agent, "contain", "--host", hosts[0], "--yes", "-p", "capture_evidence=false"], env=env)
    one_r = measured([*agent, "release", "--host", hosts[0], "--yes"], env=env)
    print(f"one host contain+release: {one[0] + one_r[0]:.2f} s; agent CPU {one[1] + one_r[1]:.2f} s "
          "(mostly the two processes' start-up)")
    key, kh = str(lab.state_dir / "agent_key"), str(lab.state_dir / "known_hosts")
    ssh = f"ssh -i {key} -o UserKnownHostsFile={kh} -o StrictHostKeyChecking=yes -o BatchMode=yes"
    addresses = "\n".join(lab.hosts[h].address for h in hosts) + "\n"
    ruleset_file = lab.state_dir / "fanout-ruleset.nft"
    ruleset_file.write_text(RULESET)
    contain_argv = ["contain", "--tag", "fleet", "--yes", "--count", n, "-p", "capture_evidence=false"]
    release_argv = ["release", "--tag", "fleet", "--yes", "--count", n]
    # The agent's own record of what it sends (untimed): the same-work side replays it.
    recorder = [*ns, str(REPO / ".venv" / "bin" / "python"), str(REPO / "bench" / "record_sent.py")]
    replay: dict[str, list[Path]] = {}
    logins = commands = 0
    for phase, argv in (("contain", contain_argv), ("release", release_argv)):
        record = lab.state_dir / f"fanout-sent-{phase}.jsonl"
        record.unlink(missing_ok=True)
        measured([*recorder, str(record), *argv], env=env)
        scripts, p_logins, p_commands = replay_scripts(record, Path(f"/tmp/fo-{lab.prefix}-{phase}"), ssh)
        if len(scripts) != len(hosts):
            raise RuntimeError(f"the agent's record of {phase} names {len(scripts)} hosts, not {len(hosts)}")
        replay[phase] = scripts
        logins, commands = logins + p_logins, commands + p_commands
    print(f"same-work replay: per host {logins / len(hosts):.1f} logins and {commands / len(hosts):.1f} commands "
          "(contain + release), as the agent's record")
    # From here, the ssh ControlMasters the replay forks into the background are reparented to this process (not
    # init), which reaps them: their CPU counts as the ssh side's.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    ratios: dict[str, list[float]] = {"minimal": [], "same work": []}
    per = len(hosts)
    for run in range(1, runs + 1):
        c = measured([*agent, *contain_argv], env=env, targets=pids)
        r = measured([*agent, *release_argv], env=env, targets=pids)
        apply = measured([*ns, "xargs", "-P", str(parallel), "-I", "{}", "sh", "-c",
                          f"{ssh} root@{{}} 'nft -f -' < {ruleset_file}"], input=addresses, targets=pids)
        delete = measured([*ns, "xargs", "-P", str(parallel), "-I", "{}", "sh", "-c",
                           f"{ssh} root@{{}} 'nft delete table {TABLE}'"], input=addresses, targets=pids)
        rc = measured([*ns, "xargs", "-P", str(parallel), "-n", "1", "sh"],
                      input="".join(f"{p}\n" for p in replay["contain"]), targets=pids)
        rr = measured([*ns, "xargs", "-P", str(parallel), "-n", "1", "sh"],
                      input="".join(f"{p}\n" for p in replay["release"]), targets=pids)
        for h in (hosts[0], hosts[-1]):  # the replay's release undid its contain, its confirm cancelled the timer
            left = lab.exec(h, ["sh", "-c", f"nft list table {TABLE}; cat {STATE_DIRS['root']}/deadman"],
                            check=False)
            if left.stdout.strip():
                raise RuntimeError(f"the replay left {h} contained or a timer armed: {left.stdout[:300]}")
        agent_wall, agent_cpu, agent_target = c[0] + r[0], c[1] + r[1], c[2] + r[2]
        print(f"run {run}: {n} hosts contain+release (max_parallel {parallel}): {agent_wall:.2f} s = "
              f"{agent_wall / (one[0] + one_r[0]):.2f}x one host; agent CPU {agent_cpu:.2f} s = "
              f"{agent_cpu / per:.3f} CPU-s per host (targets' sshd and commands {agent_target / per:.3f})")
        for name, (a, b) in (("minimal", (apply, delete)), ("same work", (rc, rr))):
            raw_wall, raw_cpu, raw_target = a[0] + b[0], a[1] + b[1], a[2] + b[2]
            ratios[name].append(agent_wall / raw_wall)
            print(f"run {run}: raw ssh {name}, xargs -P {parallel}: {raw_wall:.2f} s; ssh CPU {raw_cpu / per:.3f} "
                  f"CPU-s per host (targets' {raw_target / per:.3f}); ratio agent / raw ssh {name}: "
                  f"{ratios[name][-1]:.2f}x (target <= 1.0x); CPU per host, agent + targets: "
                  f"{(agent_cpu + agent_target) / per:.3f} s vs {(raw_cpu + raw_target) / per:.3f} s")
    if runs > 1:
        for name, values in ratios.items():
            print(f"ratio vs {name} over {runs} runs: best {min(values):.2f}x, "
                  f"median {sorted(values)[len(values) // 2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
