"""`agent block-ip --dry-run` shows exactly what the real run then sends (finding 7, through the real CLI).

Devices are simulators with existing rules, so the state-dependent lines matter: Junos inserts its term before
``allow-ssh``, FortiGate creates policies 2 and 3 (1 exists) and moves them before 1, MikroTik places its rules
first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import paramiko
import pytest

from tests.integration.firewall.cli_env import SimCli

A = "45.33.7.9"
TYPES = ["juniper_junos", "fortinet", "mikrotik_routeros", "cisco_asa", "paloalto_panos"]
EXPECT = {"juniper_junos": "insert firewall family inet filter EDGE-IN term IR-BLOCK before term allow-ssh",
          "fortinet": "move 3 before 1", "mikrotik_routeros": "place-before=0"}


@pytest.mark.parametrize("device_type", TYPES)
def test_dry_run_equals_what_the_run_sends(device_type: str, sim_factory, tmp_path: Path,
                                           host_key: paramiko.PKey) -> None:
    sim = sim_factory(device_type)
    cli = SimCli(tmp_path, host_key, {"edge": (device_type, sim)})
    before = repr(sim.state.__dict__.get("committed") or sim.state.saved)
    res = cli("block-ip", A, "--dry-run", "--json")
    assert res.returncode == 0, res.stderr + res.stdout
    (action,) = json.loads(res.stdout)["plan"]["actions"]
    preview = action["preview"]
    assert repr(sim.state.__dict__.get("committed") or sim.state.saved) == before, "the dry run changed the device"
    if device_type in EXPECT:
        assert any(EXPECT[device_type] in ln for ln in preview), preview
    assert not any(ln.startswith(("if ", "(offline")) for ln in preview), preview
    mark = len(sim.lines)
    res = cli("block-ip", A, "--reason", "c2", "--yes", "--json")
    assert res.returncode == 0, res.stderr + res.stdout
    received = [ln.strip() for ln in sim.lines[mark:]]
    shown = [ln.strip() for ln in preview]
    # every previewed line reached the device, in order
    it = iter(received)
    assert all(any(line == r for r in it) for line in shown), (shown, received)
    (outcome,) = [o for o in json.loads(res.stdout)["outcomes"] if o["action"] == "block_ip"]
    details = outcome.get("result", {}).get("details") or outcome.get("details") or {}
    if details:
        assert preview == details["applied_lines"] + details["persist"] + details.get("sessions", [])


def test_offline_dry_run_is_conditional_and_connects_nowhere(sim_factory, tmp_path: Path,
                                                             host_key: paramiko.PKey) -> None:
    sim = sim_factory("fortinet")
    cli = SimCli(tmp_path, host_key, {"edge": ("fortinet", sim)})
    res = cli("block-ip", A, "--dry-run", "--offline", "--commands")
    assert res.returncode == 0, res.stderr + res.stdout
    assert sim.connections == 0
    assert re.search(r"if .*: move <next free id> \+ 1 before <first policy id>", res.stdout), res.stdout
