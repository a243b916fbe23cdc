"""Whole-process `agent contain` + `agent release` vs raw `ssh root@victim 'nft -f -'` (apply + delete).

Also the cost of the per-request run identity a warm child takes on (agent.runctx, issue 12): adopting the
client (pid + start time from /proc), replacing the forwarded environment keys, the client-death watcher thread,
the journal owner string, and the per-call failpoint/colour checks a command makes (target ≤ 5 ms per command).

Both run from the lab's management namespace against the same real sshd, in the same run; the ratio is what
matters (target ≤ 1.5×). The same comparison runs on two more paths (issue 14): ``sudohost``, whose sshd refuses
root (the agent and raw ssh both log in as the service account and use ``sudo -n``), and ``dmz``, reachable only
through ``fw`` (the agent's ProxyJump chain vs ``ssh -o ProxyCommand='ssh -W %h:%p fw'``: ssh_config(5) notes that
command-line options of ``-J`` apply to the destination only, so the jump is spelt out with the same options).
Evidence capture is switched off for the agent so both sides do the same job: one
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
from agent.lab.topology import HOSTS, SUDO_ACCOUNT  # noqa: E402
from connectors.ssh_linux.rules import TABLE, nft_script  # noqa: E402

RULESET = nft_script([ipaddress.ip_network("10.77.0.10/32")], 22)  # exactly what the agent applies
# dmz sees the agent as fw's dmz address (the last bastion), which the agent keeps open there as well
RULESET_DMZ = nft_script([ipaddress.ip_network("10.77.0.10/32"), ipaddress.ip_network("10.77.2.1/32")], 22)


def timed(argv: list[str], **kw: object) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False, **kw)  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-3:])} exited {done.returncode}: {done.stderr[-600:]!r}")
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
        opts = ["-i", key, "-o", f"UserKnownHostsFile={kh}", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
        jump = "ssh " + " ".join(opts) + " -W %h:%p root@10.77.0.1"
        paths = {  # name: (raw ssh argv, privilege prefix on the host, ruleset)
            "victim": ([*ns, "ssh", *opts, "root@10.77.0.20"], "", RULESET),
            "sudohost": ([*ns, "ssh", *opts, f"{SUDO_ACCOUNT}@{HOSTS['sudohost'].address}"], "sudo -n ", RULESET),
            "dmz": ([*ns, "ssh", *opts, "-o", f"ProxyCommand={jump}", f"root@{HOSTS['dmz'].address}"], "",
                    RULESET_DMZ),
        }
        agent = [*ns, str(REPO / ".venv" / "bin" / "agent")]
        cold_env = {**env, "AGENT_NO_WARM": "1"}
        raw: dict[str, list[float]] = {h: [] for h in paths}
        warm: dict[str, list[float]] = {h: [] for h in paths}
        cold: list[float] = []

        def contain_release(host: str, run_env: dict[str, str]) -> float:
            return (timed([*agent, "contain", "--host", host, "-p", "capture_evidence=false", "--yes"], env=run_env)
                    + timed([*agent, "release", "--host", host, "--yes"], env=run_env))
        for _ in range(rounds):
            for host, (ssh, priv, ruleset) in paths.items():
                raw[host].append(timed([*ssh, f"{priv}nft -f -"], input=ruleset.encode())
                                 + timed([*ssh, f"{priv}nft delete table {TABLE}"]))
            cold.append(contain_release("victim", cold_env))
        server = subprocess.Popen([str(REPO / ".venv" / "bin" / "agent"), "warm"], env=env,
                                  stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)  # imports
            for _ in range(rounds):
                for host in paths:
                    warm[host].append(contain_release(host, env))
        finally:
            server.terminate()
            server.wait(timeout=10)
        r, c = statistics.median(raw["victim"]), statistics.median(cold)
        print(f"raw ssh apply+delete            median {r * 1000:7.1f} ms over {rounds} rounds (baseline)")
        print(f"agent contain+release, cold     median {c * 1000:7.1f} ms   ratio {c / r:5.2f}x")
        for host, label in (("victim", "root"), ("sudohost", "sudo -n"), ("dmz", "via bastion")):
            r, w = statistics.median(raw[host]), statistics.median(warm[host])
            print(f"{host:<9}{label:<12} raw {r * 1000:7.1f} ms   agent warm {w * 1000:7.1f} ms   ratio "
                  f"{w / r:5.2f}x   (target <= 1.5x)")
        print("the agent also snapshots, verifies from the target, arms/cancels the dead-man timer over a fresh")
        print("connection, cuts live flows and journals every transition (store + audit log)")
        ident = identity_cost()
        print(f"per-request identity (warm child) {ident * 1000:7.3f} ms per command   (target <= 5 ms)")
    finally:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
