"""An allow-list DNS name (``resolve: plan``, the default) is resolved before the plan is shown and journaled with
the intent (``allow_pins``), so the plan shows — and the connector sends — those addresses (docs/architecture.md,
decision 1; config/inventory.yaml). ``localhost`` resolves from /etc/hosts, so nothing leaves the machine. Fails
before: no planner pinned names (agent.reach.pin_names was never called), so ssh_linux refused the entry as if
it were ``resolve: target``, and an entry with addresses and a name silently kept only the addresses."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from agent.reach import resolve_names
from connectors.errors import InvalidInput
from connectors.ssh_linux.allowlist import flows_from, pinned
from connectors.types import AllowRule

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"


def _agent(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "inventory.yaml").write_text(
        "management:\n  addresses: [192.0.2.10]\n"
        "defaults:\n  ssh_linux:\n    credentials: {username: root, private_key: file:/nonexistent/key}\n"
        "hosts:\n  web1:\n    address: 127.0.3.1\n    os: linux\n"
        "    allow:\n      - {to: [192.0.2.61, localhost], proto: tcp, ports: [443], note: EDR}\n")
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {RUNBOOKS}\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        "evidence_dir: var/evidence\n")
    env = {**os.environ, "AGENT_CONFIG": str(tmp_path / "agent.yaml"), "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
    return subprocess.run([str(REPO / ".venv" / "bin" / "agent"), *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=60, check=False)


def test_the_plan_pins_allow_list_names_and_shows_the_addresses(tmp_path: Path):
    res = _agent(tmp_path, "contain", "--host", "web1", "--dry-run", "--json")
    assert res.returncode == 0, res.stderr + res.stdout
    [isolate] = [a for a in json.loads(res.stdout)["plan"]["actions"] if a["action"] == "isolate"]
    pins = resolve_names([AllowRule(source="host", names=("localhost",))])
    assert isolate["args"]["allow_pins"] == pins and "127.0.0.1" in pins["localhost"]
    shown = "\n".join(isolate["preview"])
    assert "127.0.0.1" in shown and "192.0.2.61" in shown  # the pinned address is in what is sent


def test_an_offline_dry_run_resolves_nothing_and_says_why(tmp_path: Path):
    res = _agent(tmp_path, "contain", "--host", "web1", "--dry-run", "--offline")
    assert res.returncode == 2, res.stderr + res.stdout
    assert "allow-list name(s) localhost are resolved before the plan is shown" in res.stderr
    assert "without --offline" in res.stderr


def test_an_unpinned_name_is_refused_never_left_out():
    rule = AllowRule(source="host web1", to=("192.0.2.61",), names=("edr.example",), protocol="tcp", ports=(443,))
    with pytest.raises(InvalidInput, match="edr.example were not pinned"):
        flows_from([rule])
    flows = flows_from(pinned([rule], {"edr.example": ("192.0.2.62",)}))
    assert sorted(str(f.peer) for f in flows if f.direction == "out") == ["192.0.2.61/32", "192.0.2.62/32"]
