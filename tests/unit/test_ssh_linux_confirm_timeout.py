"""``engine.confirm_timeout`` in agent.yaml is the dead-man delay of isolation unless the run names one (issue 14
finding 3: the runbooks always passed ``confirm_seconds: 300``). Dry runs only: nothing connects."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"  # shipped as package data
INVENTORY = """\
management:
  addresses: [192.0.2.10]
hosts:
  web01: {address: 127.0.1.21, os: linux, connector: ssh_linux,
          credentials: {username: root, private_key: file:/nonexistent/key}}
"""


def _plan(tmp_path: Path, engine: str, *args: str) -> dict[str, object]:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {RUNBOOKS}\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        f"evidence_dir: var/evidence\nengine: {engine}\n")
    env = {**os.environ, "AGENT_CONFIG": str(tmp_path / "agent.yaml"), "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
    res = subprocess.run([str(REPO / ".venv" / "bin" / "agent"), *args, "--dry-run", "--json"], capture_output=True,
                         text=True, env=env, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    plan: dict[str, object] = json.loads(res.stdout)["plan"]
    return plan


def _isolate_preview(plan: dict[str, object]) -> str:
    actions = plan["actions"]
    assert isinstance(actions, list)
    return "\n".join(str(line) for a in actions if a["action"] == "isolate" for line in a["preview"])


class TestConfirmTimeout:
    def test_agent_yaml_sets_the_delay(self, tmp_path: Path) -> None:
        """With engine.confirm_timeout 45 the timer that is armed sleeps 45 s, not the old fixed 300."""
        preview = _isolate_preview(_plan(tmp_path, "{confirm_timeout: 45}", "contain", "--host", "web01"))
        assert "sleep 45;" in preview and "sleep 300" not in preview

    def test_a_parameter_still_overrides_it(self, tmp_path: Path) -> None:
        """--param confirm_seconds=20 beats the configured default."""
        preview = _isolate_preview(_plan(tmp_path, "{confirm_timeout: 45}", "contain", "--host", "web01",
                                         "--param", "confirm_seconds=20"))
        assert "sleep 20;" in preview and "sleep 45" not in preview

    def test_compromised_host_runbook_follows_it_too(self, tmp_path: Path) -> None:
        """contain-compromised-host uses the configured delay as well."""
        preview = _isolate_preview(_plan(tmp_path, "{confirm_timeout: 45}", "run", "contain-compromised-host",
                                         "web01"))
        assert "sleep 45;" in preview
