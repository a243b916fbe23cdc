"""A connector from another distribution blocks an address on a device of its own kind, end to end through the CLI.

The ``toybox`` connector (tests/plugins/toybox_connector) is not in this repository's entry points: a tiny
distribution (its ``.dist-info`` with ``entry_points.txt``) is written into a folder put on ``PYTHONPATH``, as
``pip install toybox-connector`` would. Nothing in the agent names it: the inventory entry says
``connector: toybox``, block-ip plans it, the engine journals and verifies it, ``status`` describes it the way the
connector declares (``active_as``), and unblock-ip lifts it (``lifts``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"
PLUGIN = REPO / "tests" / "plugins" / "toybox_connector"


@pytest.fixture
def env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    site = tmp_path / "site"
    shutil.copytree(PLUGIN, site / "toybox_connector")
    dist = site / "toybox_connector-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toybox-connector\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[agent.connectors]\ntoybox = toybox_connector:ToyboxConnector\n")
    state = tmp_path / "toybox.json"
    (tmp_path / "inventory.yaml").write_text(
        "management:\n  addresses: [192.0.2.10]\n"
        "devices:\n  toy1:\n    address: 198.51.100.1\n    connector: toybox\n    edge: true\n"
        f"    options: {{state_file: {state}}}\n    credentials: {{username: ir, password: env:TOYBOX_PASSWORD}}\n")
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {RUNBOOKS}\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        "evidence_dir: var/evidence\n")
    environ = {**os.environ, "AGENT_CONFIG": str(tmp_path / "agent.yaml"), "NO_COLOR": "1", "AGENT_NO_WARM": "1",
               "COLUMNS": "250",
               "PYTHONPATH": str(site), "TOYBOX_PASSWORD": "not-a-real-secret"}
    return environ, state


def agent(environ: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / ".venv" / "bin" / "agent"), *args], env=environ, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def test_third_party_device_connector_end_to_end(env: tuple[dict[str, str], Path]) -> None:
    environ, state = env
    listed = json.loads(agent(environ, "connectors", "list", "--json").stdout)
    assert "toybox" in {c["name"] for c in listed}
    dry = agent(environ, "block-ip", "203.0.113.9", "--on", "toy1", "--dry-run", "--commands")
    assert dry.returncode == 0 and "toybox add 203.0.113.9/32" in dry.stdout, dry.stdout + dry.stderr
    assert not state.exists()  # a dry run sends nothing
    done = agent(environ, "block-ip", "203.0.113.9", "--on", "toy1", "--reason", "scanner", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(state.read_text())["blocked"] == ["203.0.113.9/32"]
    status = agent(environ, "status")
    assert "toy1" in status.stdout and "blocked 203.0.113.9" in status.stdout, status.stdout
    undone = agent(environ, "unblock-ip", "203.0.113.9", "--on", "toy1", "--reason", "done", "--yes")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert json.loads(state.read_text())["blocked"] == []
    after = json.loads(agent(environ, "status", "--json").stdout)
    assert after["active"] == [], after  # unblock lifted the block (the connector declares it), nothing listed


def test_bad_input_is_refused_before_the_plugin_connects(env: tuple[dict[str, str], Path]) -> None:
    """Validation runs before any connection: an invalid address changes nothing on the device."""
    environ, state = env
    done = agent(environ, "block-ip", "203.0.113.9;reboot", "--on", "toy1", "--yes")
    assert done.returncode == 2 and "address" in done.stderr, done.stdout + done.stderr
    assert not state.exists()
