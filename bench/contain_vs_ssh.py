"""Whole-process `agent contain --host victim` + `agent release` vs raw `ssh root@victim 'nft -f -'` (apply + delete).

Both run from the lab's management namespace against the same real sshd, in the same run; the ratio is what
matters (target ≤ 1.5×). Evidence capture is switched off for the agent so both sides do the same job: one
ruleset applied, then removed. The agent additionally snapshots, verifies, arms and cancels the dead-man timer
and journals every step — that is the price of safety this figure makes visible.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agent.lab import Lab  # noqa: E402

RULESET = """table inet containment
delete table inet containment
table inet containment {
  chain input { type filter hook input priority -10; policy drop;
    iif "lo" accept
    ip saddr 10.77.0.10 tcp dport 22 accept }
  chain output { type filter hook output priority -10; policy drop;
    oif "lo" accept
    ip daddr 10.77.0.10 tcp sport 22 accept }
  chain forward { type filter hook forward priority -10; policy drop; }
}
"""


def timed(argv: list[str], **kw: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def main() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    lab = Lab(prefix="cbe")
    lab.up()
    try:
        ns = ["ip", "netns", "exec", f"{lab.prefix}-mgmt"]
        env = {**os.environ, "AGENT_CONFIG": str(lab.config_dir / "agent.yaml")}
        key, kh = str(lab.state_dir / "agent_key"), str(lab.state_dir / "known_hosts")
        ssh = [*ns, "ssh", "-i", key, "-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes",
               "-o", "BatchMode=yes", "root@10.77.0.20"]
        agent = [*ns, str(REPO / ".venv" / "bin" / "agent")]
        raw, ours = [], []
        for _ in range(rounds):
            raw.append(timed([*ssh, "nft -f -"], input=RULESET.encode())
                       + timed([*ssh, "nft delete table inet containment"]))
            ours.append(timed([*agent, "contain", "--host", "victim", "-p", "capture_evidence=false", "--yes"],
                              env=env)
                        + timed([*agent, "release", "--host", "victim", "--yes"], env=env))
        r, o = statistics.median(raw), statistics.median(ours)
        print(f"raw ssh apply+delete     median {r * 1000:7.1f} ms over {rounds} rounds")
        print(f"agent contain+release    median {o * 1000:7.1f} ms over {rounds} rounds")
        print(f"ratio agent / raw ssh    {o / r:5.2f}x   (target <= 1.5x)")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
