"""The plan and `status` say what cannot be undone: the runbook's `irreversible` note and each action's
`undo_description` (declared by its connector) are shown, not just stored."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AGENT = str(REPO / ".venv" / "bin" / "agent")


def test_dry_run_names_what_cannot_be_undone(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}  # no AD password: nothing connects
    env.update(NO_COLOR="1", AGENT_NO_WARM="1", COLUMNS="200")
    done = subprocess.run([AGENT, "init", str(tmp_path / "etc")], env=env, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    cfg = tmp_path / "etc" / "agent.yaml"
    text = re.sub(r"^# database: .*$", f"database: {tmp_path / 'agent.db'}", cfg.read_text(), flags=re.MULTILINE)
    text = re.sub(r"^# audit_dir: .*$", f"audit_dir: {tmp_path / 'audit'}", text, flags=re.MULTILINE)
    cfg.write_text(text)
    done = subprocess.run([AGENT, "disable-account", "jdoe", "--reset-password", "--dry-run", "-c", str(cfg)],
                          env=env, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "NOT reversible: reset_password cannot be undone; disabling is what locks the attacker out." in done.stdout
    assert "undo: cannot be undone; an administrator must set a new password" in done.stdout
