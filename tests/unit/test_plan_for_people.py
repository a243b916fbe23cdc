"""The default plan is for a person at 3 a.m.: the effect per step, targets grouped, fits a screen; the exact text
sent to each target is one flag away (`--commands`) and comes from the same planned actions."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"  # shipped as package data
CONFIG = REPO / "agent" / "data" / "config"  # the annotated example configuration


def _config(tmp_path: Path, hosts: int) -> Path:
    lines = "".join(f"  fin-ws-{i:02d}: {{address: 127.0.3.{i}, os: linux, tags: [outbreak]}}\n"
                    for i in range(1, hosts + 1))
    (tmp_path / "inventory.yaml").write_text(
        "management:\n  addresses: [192.0.2.10]  # the agent's own address: never contacted\n"
        "defaults:\n  ssh_linux:\n    credentials: {username: root, private_key: file:/nonexistent/key}\n"
        f"hosts:\n{lines}")
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {RUNBOOKS}\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        "evidence_dir: var/evidence\n")
    return tmp_path / "agent.yaml"


def _agent(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_CONFIG": str(cfg), "NO_COLOR": "1", "AGENT_NO_WARM": "1", "COLUMNS": "120"}
    return subprocess.run([str(REPO / ".venv" / "bin" / "agent"), *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=60, check=False)


class TestPlanForPeople:
    def test_ten_hosts_fit_one_screen(self, tmp_path: Path):
        """10 hosts: the default dry run fits in 40 rows × 120 columns and names every host."""
        res = _agent(_config(tmp_path, 10), "contain", "--tag", "outbreak", "--dry-run")
        assert res.returncode == 0, res.stderr
        rows = res.stdout.splitlines()
        assert len(rows) <= 40, res.stdout
        assert max(len(r) for r in rows) <= 120, res.stdout
        for i in range(1, 11):
            assert f"fin-ws-{i:02d} (127.0.3.{i})" in res.stdout

    def test_default_shows_effect_not_shell(self, tmp_path: Path):
        """What stays reachable, from where, and for how long — without the dead-man script text."""
        res = _agent(_config(tmp_path, 1), "contain", "--host", "fin-ws-01", "--dry-run")
        assert res.returncode == 0, res.stderr
        assert "keep tcp/22 from 192.0.2.10" in res.stdout
        assert "auto-revert in 300 s" in res.stdout
        assert "<<'EOF'" not in res.stdout and "nft -f" not in res.stdout
        assert len(res.stdout) < 1500, len(res.stdout)

    def test_commands_shows_the_exact_preview(self, tmp_path: Path, capsys, monkeypatch):
        """`--commands` prints every preview line of the plan's JSON, i.e. the same text the engine sends.

        Both runs happen in this process: the exact text names the run's owner (the dead-man timer records whose
        it is), so two processes legitimately differ there.
        """
        from agent.cli import main

        monkeypatch.setenv("AGENT_CONFIG", str(_config(tmp_path, 1)))
        monkeypatch.setenv("NO_COLOR", "1")
        assert main(["contain", "--host", "fin-ws-01", "--dry-run", "--commands"]) == 0
        human = capsys.readouterr().out
        assert main(["contain", "--host", "fin-ws-01", "--dry-run", "--json"]) == 0
        plan = json.loads(capsys.readouterr().out)["plan"]
        prefix = "       | "  # how --commands marks the exact text (the text itself may hold '| ')
        shown = [line[len(prefix):] for line in human.splitlines() if line.startswith(prefix)]
        expected = [sub for action in plan["actions"] for line in action["preview"] for sub in line.splitlines()]
        assert shown == expected
        assert all(action["summary"] for action in plan["actions"])
