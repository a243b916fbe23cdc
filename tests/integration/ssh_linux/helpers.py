"""Shared pieces of the ssh_linux lab tests: the connector as the engine drives it, timer and ruleset readers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent.lab import Lab
from connectors.ssh_linux import SshLinuxConnector, SshSession
from connectors.types import ConnectorContext, Credentials, Snapshot, Target

REPO = Path(__file__).resolve().parents[3]
VICTIM_ROWS = [("mgmt", "victim", 22), ("mgmt", "victim", 8080), ("attacker", "victim", 8080),
               ("attacker", "victim", 22), ("peer", "victim", 8080), ("peer", "victim", 22),
               ("victim", "peer", 8080), ("victim", "attacker", 8080)]
LEGACY_ROWS = [("mgmt", "legacy", 22), ("attacker", "legacy", 8080), ("peer", "legacy", 8080),
               ("legacy", "peer", 8080)]
# How a timer's own script starts: today's (token first), and the version before the lock (PID file first), so
# the tests can also be run against the old code.
TIMER_SCRIPTS = (b": containment-deadman ", b"echo $$ > /run/containment-deadman.pid")
STOP_TIMER = ('read -r p _ < /run/containment-agent/deadman && kill -15 -"$p"; '
              "rm -rf /run/containment-agent; true")


class Agent:
    """The connector as the engine drives it, acting from the lab's management host."""

    def __init__(self, lab: Lab, **overrides: Any) -> None:
        self.lab = lab
        self.conn = SshLinuxConnector()
        self.creds = Credentials("root", private_key_path=str(lab.agent_key))
        ctx: dict[str, Any] = {"management_addresses": (lab.management_address,),
                               "known_hosts": str(lab.known_hosts), "connect_timeout": 3, "command_timeout": 15,
                               "confirm_timeout": 60}
        self.ctx = ConnectorContext(**{**ctx, **overrides})

    def target(self, host: str, address: str | None = None, options: dict[str, Any] | None = None) -> Target:
        return Target(host, "host", address or self.lab.hosts[host].address, "ssh_linux", options=options or {})

    def open(self, host: str, address: str | None = None, *, user: str = "root",
             options: dict[str, Any] | None = None) -> SshSession:
        creds = self.creds if user == "root" else Credentials(user, private_key_path=str(self.lab.agent_key))
        with self.lab.enter("mgmt"):
            return self.conn.open(self.target(host, address, options), creds, self.ctx)

    def isolate(self, s: SshSession, args: dict[str, Any] | None = None) -> tuple[Snapshot, Any, Any]:
        args = args or {}
        self.conn.validate(s.target, "isolate", args)
        snap = self.conn.snapshot(s, "isolate", args)
        result = self.conn.apply(s, "isolate", args, snap)
        return snap, result, self.conn.verify(s, "isolate", args)

    def release(self, s: SshSession, snap: Snapshot) -> tuple[Any, Any]:
        result = self.conn.undo(s, "isolate", {}, snap)
        return result, self.conn.verify(s, "isolate", {})


def stop_timers(lab: Lab, hosts: tuple[str, ...] = ("victim", "legacy", "dmz")) -> None:
    """Never leave a dead-man timer running into other tests."""
    for host in hosts:
        lab.exec(host, ["sh", "-c", STOP_TIMER], check=False)


def timers_in(lab: Lab, host: str) -> list[int]:
    """PIDs of dead-man timer shells running on ``host`` (its mount namespace: the machine's PIDs are shared
    with every other lab and test run, so a plain ``ps | grep`` would see their timers too)."""
    from agent.lab import procs
    sshd_pid = procs.read_pid(lab.host_dir(host) / "sshd.pid")
    assert sshd_pid is not None
    mnt = os.readlink(f"/proc/{sshd_pid}/ns/mnt")
    found: dict[int, int] = {}  # pid -> parent pid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if len(argv) > 2 and argv[:2] == [b"sh", b"-c"] and argv[2].startswith(TIMER_SCRIPTS) and \
                    os.readlink(entry / "ns" / "mnt") == mnt:
                stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
                found[int(entry.name)] = int(stat.rsplit(") ", 1)[-1].split()[1])
        except (OSError, ValueError):
            continue
    # The timer shell forks to run `sleep`; until the child calls execve it carries the same command line. On a
    # loaded machine that moment lasts long enough to be seen: it is the same timer, not a second one.
    return sorted(pid for pid, parent in found.items() if parent not in found)


def rows(lab: Lab, matrix: list[tuple[str, str, int]]) -> dict[str, str]:
    return lab.probe(matrix, timeout=0.5).as_dict()


def nft_ruleset(lab: Lab, host: str) -> str:
    return lab.exec(host, ["nft", "list", "ruleset"]).stdout


def ipt_state(lab: Lab, host: str) -> str:
    from connectors.ssh_linux.state import normalise
    return normalise(lab.exec(host, ["iptables-save"]).stdout) + "\n--\n" + \
        normalise(lab.exec(host, ["ip6tables-save"]).stdout)


def cli_config(lab: Lab, tmp_path: Path) -> Path:
    """A private copy of the lab's configuration (own journal, audit log and evidence) for CLI runs: the one the
    engine tests use (tests/integration/engine/runs.py), so both families of tests run the same configuration."""
    from tests.integration.engine.runs import private_config
    return private_config(lab, tmp_path)


def record_sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command any :class:`SshSession` sends from now on (the first session and a fresh confirming one), in
    order — the test's own list, filled as the sessions run."""
    commands: list[str] = []
    real_run = SshSession.run

    def recording(self: SshSession, cmd: str, *a: Any, **k: Any) -> Any:
        commands.append(cmd)
        return real_run(self, cmd, *a, **k)
    monkeypatch.setattr(SshSession, "run", recording)
    return commands


def run_agent(lab: Lab, cfg: Path, *args: str, failpoints: str = "",
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The ``agent`` command as a responder runs it, from the lab's management host."""
    env = {**os.environ, "AGENT_CONFIG": str(cfg), "NO_COLOR": "1", "AGENT_NO_WARM": "1",
           "AGENT_FAILPOINTS": failpoints}
    return subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-mgmt", str(REPO / ".venv" / "bin" / "agent"),
                           *args], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, check=False)
