"""The agent never blocks the address its own sessions to a device come from — refused at plan time, before any
connection (issue 17: own addresses; docs/architecture.md decision 1, step 1: protected assets are refused, exit 3,
before anything connects).

The address is what the kernel would use to reach the device (a route lookup: a UDP socket "connected" to the
device sends nothing) or, behind jump hosts, the innermost jump host's address. It need not be listed under
``management`` to be protected: blocking it would cut the agent off the device mid-change.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path
from typing import Any

import pytest

DEVICE = "192.0.2.77"   # never contacted: the test fails (instead of connecting) if anything tries
REPO = Path(__file__).resolve().parents[2]


def _source_towards(address: str) -> str:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((address, 22))   # a route lookup only: UDP connect sends no packet
            return str(s.getsockname()[0])
    except OSError:
        pytest.skip(f"no route to {address} on this machine")
    raise AssertionError("unreachable")


def _config(tmp_path: Path, jump: bool = False) -> Path:
    inv = ("management:\n  addresses: [203.0.113.10]\n"
           + ("jump_hosts:\n  bastion: {address: 198.51.100.9, host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE"
              "xampleExampleExampleExampleExampleExampleExam', credentials: {username: ir, password: 'env:X'}}\n"
              if jump else "")
           + "devices:\n  edge:\n    address: " + DEVICE + "\n    device_type: linux\n    edge: true\n"
           + ("    jump: [bastion]\n" if jump else "")
           + "    credentials: {username: root, password: 'env:X'}\n"
           "    host_key: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExampleExam'\n")
    (tmp_path / "inventory.yaml").write_text(inv)
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {REPO / 'agent' / 'data' / 'runbooks'}\ndatabase: var/agent.db\n"
        "audit_dir: var/audit\nevidence_dir: var/evidence\n")
    return tmp_path / "agent.yaml"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every connection attempt the firewall connector makes (each one fails the test's purpose)."""
    from connectors.firewall import FirewallConnector
    calls: list[Any] = []

    def refuse(self: Any, target: Any, *args: Any) -> Any:
        calls.append(target.address)
        raise AssertionError(f"connected to {target.address}")

    monkeypatch.setattr(FirewallConnector, "open", refuse)
    monkeypatch.setenv("X", "pw")
    monkeypatch.setenv("NO_COLOR", "1")
    return calls


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_agent_source_address_is_refused_before_connecting(tmp_path: Path, opened: list[Any], capsys,
                                                           monkeypatch: pytest.MonkeyPatch, dry_run: bool) -> None:
    from agent.cli import main
    source = _source_towards(DEVICE)
    monkeypatch.setenv("AGENT_CONFIG", str(_config(tmp_path)))
    wider = ipaddress.ip_network(f"{source}/30", strict=False)
    for value in [source] + ([str(wider)] if ipaddress.ip_address(DEVICE) not in wider else []):
        rc = main(["block-ip", value, "--on", "edge", "--allow-private", "--reason", "c2",
                   *(["--dry-run"] if dry_run else ["--yes"])])
        err = capsys.readouterr().err
        assert rc == 3, err
        assert source in err and "agent" in err, err
    assert opened == []


def test_behind_a_jump_host_its_address_is_the_source(tmp_path: Path, opened: list[Any], capsys,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.cli import main
    monkeypatch.setenv("AGENT_CONFIG", str(_config(tmp_path, jump=True)))
    rc = main(["block-ip", "198.51.100.9", "--on", "edge", "--reason", "c2", "--yes"])
    err = capsys.readouterr().err
    assert rc == 3 and "bastion" in err, err
    assert opened == []
