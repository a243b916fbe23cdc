"""Two operators at once: one runs ``agent contain --host victim``, the other ``agent release --host victim``
while that containment is still being applied.

Found trying it as a stranger (issue 19's two-operator check): the release planned from the journal at that
instant, found no *done* isolate, said "no active isolate in the journal — nothing to undo", exited 0 — and the
host ended isolated, with the second operator believing it released. An experienced responder expects the
release to wait for the containment in flight on that host, then undo it; and if it does not finish in time, to
be told which run holds it, with nothing released.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.lab import Lab
from agent.store import Action, Store
from tests.integration.cli import test_contain_cli as contain_cli
from tests.integration.cli.test_contain_cli import AGENT, agent, ruleset

pytestmark = pytest.mark.root

cfg = contain_cli.cfg  # a private copy of the lab's configuration (fixture)


def isolate_rows(cfg_path: Path) -> list[Action]:
    store = Store(f"sqlite:///{cfg_path.parent / 'agent.db'}")
    try:
        with store.session() as s:
            return list(s.scalars(select(Action).where(Action.action == "isolate").order_by(Action.seq)))
    except Exception:  # noqa: BLE001 - not created yet
        return []
    finally:
        store.close()


def start_contain(lab: Lab, cfg_path: Path, failpoints: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AGENT_CONFIG": str(cfg_path), "NO_COLOR": "1", "AGENT_NO_WARM": "1",
           "AGENT_FAILPOINTS": failpoints}
    return subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-mgmt", AGENT, "contain", "--host", "victim",
                             "--yes", "--json", "-p", "capture_evidence=false", "--reason", "operator A"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)


def wait_applying(cfg_path: Path, first: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(r.kind == "apply" and r.state == "applying" for r in isolate_rows(cfg_path)):
            return
        assert first.poll() is None, first.communicate()
        time.sleep(0.05)
    raise AssertionError("the first contain never reached 'applying'")


def test_release_during_a_contain_waits_for_it_then_undoes_it(clean_lab: Lab, cfg: Path):
    lab = clean_lab
    before = ruleset(lab, "victim")
    first = start_contain(lab, cfg, "before-apply:pause")  # holds 'applying' for 3 s
    wait_applying(cfg, first)
    res = agent(lab, cfg, "release", "--host", "victim", "--yes", "--json", "--reason", "operator B")
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert res.returncode == 0, res.stdout + res.stderr
    assert "waiting for it" in res.stderr and "operator A" not in res.stderr  # names the run, not its reason
    assert json.loads(res.stdout)["status"] == "done", res.stdout
    rows = isolate_rows(cfg)
    assert [(r.kind, r.state) for r in rows] == [("apply", "done"), ("undo", "done")], rows
    assert rows[0].undone_at is not None
    assert ruleset(lab, "victim") == before  # released: the second operator's word holds


def test_release_refuses_when_the_contain_in_flight_does_not_finish_in_time(clean_lab: Lab, cfg: Path):
    """``AGENT_IN_FLIGHT_WAIT`` short, the contain paused longer: nothing released, exit 3, the message names the
    incident and state of the run that holds the host; the contain then finishes as it would have."""
    lab = clean_lab
    first = start_contain(lab, cfg, "before-apply:pause,before-verify:pause")  # ≈ 6 s in flight
    wait_applying(cfg, first)
    res = agent(lab, cfg, "release", "--host", "victim", "--yes", env={"AGENT_IN_FLIGHT_WAIT": "1"})
    assert res.returncode == 3, res.stdout + res.stderr
    incident = isolate_rows(cfg)[0].incident_id
    assert "nothing was released" in res.stderr and incident in res.stderr, res.stderr
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert [(r.kind, r.state) for r in isolate_rows(cfg)] == [("apply", "done")]
    assert "table inet containment_agent" in ruleset(lab, "victim")
