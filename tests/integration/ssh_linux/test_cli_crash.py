"""`agent contain` killed between loading the rules and confirming them, then the responder's next commands
(issue 14 findings 1 and 5): the host's real state must match what the agent says at every step, the next contain
confirms the isolation (no stale timer lifts it later), and commands with bad input or about other hosts touch
nothing of the interrupted action."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from agent.lab import Lab
from tests.integration.ssh_linux.helpers import cli_config, rows, run_agent, timers_in

pytestmark = [pytest.mark.root, pytest.mark.slow]
DELAY = 40  # longer than the steps before the final contain on a busy machine; the test waits until it is past
CHECK = [("attacker", "victim", 8080), ("mgmt", "victim", 22), ("attacker", "peer", 8080)]
ISOLATED = {"attacker->victim:8080": "blocked", "mgmt->victim:22": "open", "attacker->peer:8080": "open"}


def status(lab: Lab, cfg: Path) -> dict[str, Any]:
    res = run_agent(lab, cfg, "status", "--json")
    assert res.returncode == 0, res.stderr
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def contained(lab: Lab, cfg: Path) -> set[str]:
    return {a["target"] for a in status(lab, cfg)["active"] if a["action"] == "isolate"}


@pytest.mark.parametrize("point", ["isolate-after-load", "isolate-before-confirm"])
def test_killed_between_load_and_confirm(clean_lab: Lab, tmp_path: Path, point: str) -> None:
    """Killed at ``point``: the host is isolated under an armed timer and status does not call it contained; a
    bad parameter or a contain of another host touch nothing of it; the next contain confirms it, and after the
    timer's delay the host is still isolated and still listed as contained; release opens it."""
    lab = clean_lab
    cfg = cli_config(lab, tmp_path)
    base = ["--param", f"confirm_seconds={DELAY}", "--reason", "test", "--yes"]
    res = run_agent(lab, cfg, "contain", "--host", "victim", *base, failpoints=point)
    armed_at = time.monotonic()
    assert res.returncode == -9, res.stdout + res.stderr
    assert rows(lab, CHECK) == ISOLATED
    armed = timers_in(lab, "victim")
    assert len(armed) == 1
    assert "victim" not in contained(lab, cfg)  # the agent does not claim what it never confirmed
    unfinished = [a["id"] for a in status(lab, cfg)["unfinished"] if a["target"] == "victim"]
    assert unfinished

    res = run_agent(lab, cfg, "contain", "--host", "victim", "--param", "confirm_seconds=soon", "--yes")
    assert res.returncode == 2 and "confirm_seconds" in res.stderr, res.stdout + res.stderr
    assert timers_in(lab, "victim") == armed, "bad input touched the host"
    assert [a["id"] for a in status(lab, cfg)["unfinished"] if a["target"] == "victim"] == unfinished

    res = run_agent(lab, cfg, "contain", "--host", "peer", *base)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "victim" not in res.stdout, "a command about peer reconciled victim"
    assert timers_in(lab, "victim") == armed
    assert run_agent(lab, cfg, "release", "--host", "peer", "--yes").returncode == 0

    res = run_agent(lab, cfg, "contain", "--host", "victim", *base)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "interrupted" in res.stdout
    assert timers_in(lab, "victim") == []
    assert contained(lab, cfg) == {"victim"}
    time.sleep(max(0.0, armed_at + DELAY + 2 - time.monotonic()))  # the crashed run's timer would have fired
    assert rows(lab, CHECK) == ISOLATED, "a stale dead-man timer lifted the isolation"
    assert contained(lab, cfg) == {"victim"}

    res = run_agent(lab, cfg, "release", "--host", "victim", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert rows(lab, CHECK)["attacker->victim:8080"] == "open"
    assert contained(lab, cfg) == set()
