"""The test session's private state folder (tests/conftest.py): one per pytest-xdist worker.

Why: ``make test`` runs the integration suite on two xdist workers; both inherit the controller's environment,
``$AGENT_STATE_DIR`` included, and two workers' agents defaulting to one journal would see each other's actions.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHOW = "import os, tests.conftest; print(os.environ['AGENT_STATE_DIR'])"


def state_dir_with(tmp_path: Path, **env: str) -> Path:
    base = {k: v for k, v in os.environ.items() if k not in ("AGENT_STATE_DIR", "PYTEST_XDIST_WORKER")}
    out = subprocess.run([sys.executable, "-c", SHOW], cwd=REPO, env={**base, **env}, capture_output=True,
                         text=True, check=True, timeout=60)
    return Path(out.stdout.strip())


def test_a_worker_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    """A worker started with the controller's folder in its environment makes a new one (naming the worker)."""
    inherited = tmp_path / "controller-state"
    inherited.mkdir()
    got = state_dir_with(tmp_path, AGENT_STATE_DIR=str(inherited), PYTEST_XDIST_WORKER="gw1")
    assert got != inherited and got.is_absolute()
    assert "-gw1-" in got.name


def test_one_process_keeps_a_folder_it_was_given(tmp_path: Path) -> None:
    """Outside xdist a folder set by whoever started the session is kept; none set: a private one is made."""
    given = tmp_path / "given"
    assert state_dir_with(tmp_path, AGENT_STATE_DIR=str(given)) == given
    made = state_dir_with(tmp_path)
    assert made.name.startswith("agent-test-state-") and made != given
