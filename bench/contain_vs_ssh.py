"""Whole-process `agent contain --host victim` + `agent release` vs raw `ssh root@victim 'nft -f -'` (apply + delete).

Also the cost of the per-request run identity a warm child takes on (agent.runctx, issue 12): adopting the
client (pid + start time from /proc), replacing the forwarded environment keys, the client-death watcher thread,
the journal owner string, and the per-call failpoint/colour checks a command makes (target ≤ 5 ms per command).

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

import ipaddress  # noqa: E402

from agent.lab import Lab  # noqa: E402
from connectors.ssh_linux.rules import nft_script  # noqa: E402

RULESET = nft_script([ipaddress.ip_network("10.77.0.10/32")], 22)  # exactly what the agent applies


def timed(argv: list[str], **kw: object) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, **kw)  # type: ignore[call-overload]
    return time.perf_counter() - start


def identity_cost(iterations: int = 2000) -> float:
    """Seconds per request of everything per-request identity adds to a warm child (measured in-process)."""
    import socket
    import threading

    from agent import runctx
    from agent.warm_client import ENV_KEEP

    env = {k: os.environ[k] for k in ENV_KEEP if k in os.environ}
    client = os.getppid()
    left, right = socket.socketpair()
    start = time.perf_counter()
    for _ in range(iterations):
        runctx.adopt_client(client)
        for key in ENV_KEEP:  # what agent.warm._adopt does with the request's environment
            if key in env:
                os.environ[key] = env[key]
            else:
                os.environ.pop(key, None)
        str(runctx.current_owner())  # the journal's owner (once per command)
        watcher = threading.Thread(target=lambda: None, daemon=True)  # agent.warm._die_with_client
        watcher.start()
        for _ in range(10):  # failpoints reached by a contain + the colour decisions of its output
            runctx.armed()
            runctx.colour_enabled()
        watcher.join()
    took = (time.perf_counter() - start) / iterations
    runctx._CLIENT.clear()
    left.close()
    right.close()
    return took


def main() -> int:
    rounds = int(os.environ.get("BENCH_ROUNDS", "5"))
    lab = Lab(prefix="cbe")
    lab.up()
    try:
        ns = ["ip", "netns", "exec", f"{lab.prefix}-mgmt"]
        # an installed agent has its bytecode cached: a harness's PYTHONDONTWRITEBYTECODE would make every cold
        # start (and every module a warm child imports) compile from source, which is not what users run
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["AGENT_CONFIG"] = str(lab.config_dir / "agent.yaml")
        key, kh = str(lab.state_dir / "agent_key"), str(lab.state_dir / "known_hosts")
        ssh = [*ns, "ssh", "-i", key, "-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes",
               "-o", "BatchMode=yes", "root@10.77.0.20"]
        agent = [*ns, str(REPO / ".venv" / "bin" / "agent")]
        contain = [*agent, "contain", "--host", "victim", "-p", "capture_evidence=false", "--yes"]
        release = [*agent, "release", "--host", "victim", "--yes"]
        cold_env = {**env, "AGENT_NO_WARM": "1"}
        raw, cold, warm = [], [], []
        for _ in range(rounds):
            raw.append(timed([*ssh, "nft -f -"], input=RULESET.encode())
                       + timed([*ssh, "nft delete table inet containment_agent"]))
            cold.append(timed(contain, env=cold_env) + timed(release, env=cold_env))
        server = subprocess.Popen([str(REPO / ".venv" / "bin" / "agent"), "warm"], env=env,
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)  # imports
            for _ in range(rounds):
                warm.append(timed(contain, env=env) + timed(release, env=env))
        finally:
            server.terminate()
            server.wait(timeout=10)
        r, c, w = statistics.median(raw), statistics.median(cold), statistics.median(warm)
        print(f"raw ssh apply+delete            median {r * 1000:7.1f} ms over {rounds} rounds (baseline)")
        print(f"agent contain+release, cold     median {c * 1000:7.1f} ms   ratio {c / r:5.2f}x")
        print(f"agent contain+release, warm     median {w * 1000:7.1f} ms   ratio {w / r:5.2f}x   (target <= 1.5x)")
        print("the agent also snapshots, verifies from the target, arms/cancels the dead-man timer over a fresh")
        print("connection, cuts live flows and journals every transition (store + audit log)")
        ident = identity_cost()
        print(f"per-request identity (warm child) {ident * 1000:7.3f} ms per command   (target <= 5 ms)")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
