"""Fan-out on one machine (issue 19): ``agent contain --tag fleet`` + ``agent release`` of N lab hosts against raw
``ssh`` doing the same ruleset apply + delete to the same N hosts with the same parallelism (``xargs -P``), in the
same run; and the CPU-seconds per host of both sides: the agent's (user + system of the command and its
children) against the ssh clients', and what each caused on the targets (their sshd listeners' trees: every
connection's sshd, shell and tool), since the lab's hosts share this machine's cores.

    python bench/fanout_vs_ssh.py [--hosts 50] [--parallel 8] [--runs 2]

Target (issue 19): ≤ 1.0× raw ssh; the issue measured 1.92× and ~0.05 CPU-s per host before. Evidence capture
is off for the agent, so both sides do one ruleset apply and one removal per host; the agent additionally
snapshots, verifies from the target, arms and cancels the dead-man timer through a second (fresh) connection,
cuts live flows and journals every step. docs/workers.md "Fan-out on one machine" has where the time goes.
"""

from __future__ import annotations

import argparse
import ipaddress
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
from connectors.ssh_linux.rules import TABLE, nft_script  # noqa: E402
from tests.slots import claim  # noqa: E402

RULESET = nft_script([ipaddress.ip_network("10.77.0.10/32")], 22)  # exactly what the agent applies


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
    after, target_after = resource.getrusage(resource.RUSAGE_CHILDREN), target_cpu(targets)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-4:])} exited {res.returncode}: {res.stdout[-800:]}{res.stderr[-800:]}")
    return (wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            target_after - target_before)


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
    ratios = []
    for run in range(1, runs + 1):
        c = measured([*agent, "contain", "--tag", "fleet", "--yes", "--count", n, "-p", "capture_evidence=false"],
                     env=env, targets=pids)
        r = measured([*agent, "release", "--tag", "fleet", "--yes", "--count", n], env=env, targets=pids)
        apply = measured([*ns, "xargs", "-P", str(parallel), "-I", "{}", "sh", "-c",
                          f"{ssh} root@{{}} 'nft -f -' < {ruleset_file}"], input=addresses, targets=pids)
        delete = measured([*ns, "xargs", "-P", str(parallel), "-I", "{}", "sh", "-c",
                           f"{ssh} root@{{}} 'nft delete table {TABLE}'"], input=addresses, targets=pids)
        agent_wall, agent_cpu, agent_target = c[0] + r[0], c[1] + r[1], c[2] + r[2]
        raw_wall, raw_cpu, raw_target = apply[0] + delete[0], apply[1] + delete[1], apply[2] + delete[2]
        per = len(hosts)
        print(f"run {run}: {n} hosts contain+release (max_parallel {parallel}): {agent_wall:.2f} s = "
              f"{agent_wall / (one[0] + one_r[0]):.2f}x one host; agent CPU {agent_cpu:.2f} s = "
              f"{agent_cpu / per:.3f} CPU-s per host (targets' sshd and commands {agent_target / per:.3f})")
        print(f"run {run}: raw ssh apply+delete, xargs -P {parallel}: {raw_wall:.2f} s (baseline); ssh CPU "
              f"{raw_cpu:.2f} s = {raw_cpu / per:.3f} CPU-s per host (targets' sshd and commands "
              f"{raw_target / per:.3f})")
        ratios.append(agent_wall / raw_wall)
        print(f"run {run}: ratio agent / raw ssh: {ratios[-1]:.2f}x (target <= 1.0x); CPU per host, agent + "
              f"targets: {(agent_cpu + agent_target) / per:.3f} s vs raw {(raw_cpu + raw_target) / per:.3f} s")
    if runs > 1:
        print(f"ratio over {runs} runs: best {min(ratios):.2f}x, median {sorted(ratios)[len(ratios) // 2]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
