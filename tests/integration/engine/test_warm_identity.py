"""A warm run is the client's run: its actions are owned by the CLI process, its failpoints and its death count.

Each test runs cold and warm against the lab's real sshd + nftables host and gives the same journal and the
same real state (issue 12: the fork server used to own every action, so a SIGKILLed client was never reconciled).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab
from agent.runctx import Owner
from tests.integration.engine.runs import Runner, private_config, ruleset, wait_until

pytestmark = pytest.mark.root


def nothing_left(status: dict[str, list[object]]) -> bool:
    return not any(status.values())


@pytest.fixture(params=["cold", "warm"])
def run(request: pytest.FixtureRequest, clean_lab: Lab, tmp_path: Path) -> Iterator[Runner]:
    runner = Runner(clean_lab, private_config(clean_lab, tmp_path), request.param)
    with runner.serving(server_env={"AGENT_FAILPOINTS": "after-intent"}):  # the server's own: never honoured
        yield runner


class TestWarmIdentity:
    def test_killed_at_failpoint_is_owned_by_the_client_and_reconciled(self, run: Runner):
        """SIGKILL at after-apply: the client dies, the action is owned by the client pid, the next run finishes it."""
        proc = run.popen("contain", "--host", "victim", "-p", "capture_evidence=false", "--yes",
                         env={"AGENT_FAILPOINTS": "after-apply"})
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        unfinished = run.status()["unfinished"]
        assert [a["state"] for a in unfinished] == ["applying"]
        owner = Owner.parse(unfinished[0]["owner"])
        assert owner is not None and owner.pid == proc.pid and owner.start is not None
        assert "containment" in ruleset(run.lab, "victim")
        res = run("release", "--host", "victim", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "reconciled isolate on victim" in res.stdout and "not re-applied" in res.stdout
        assert "containment" not in ruleset(run.lab, "victim")
        assert nothing_left(run.status())

    def test_sigkill_of_the_client_mid_action_stops_the_run(self, run: Runner):
        """A client SIGKILLed while its action pauses after apply: nothing more happens; the next start reconciles."""
        proc = run.popen("contain", "--host", "victim", "-p", "capture_evidence=false", "--yes",
                         env={"AGENT_FAILPOINTS": "after-apply:pause"})
        wait_until(lambda: "containment" in ruleset(run.lab, "victim"), what="the isolation to be applied")
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        time.sleep(3.5)  # longer than the pause: a run that went on would have journaled 'done' by now
        unfinished = run.status()["unfinished"]
        assert [a["state"] for a in unfinished] == ["applying"], unfinished
        assert Owner.parse(unfinished[0]["owner"]).pid == proc.pid  # type: ignore[union-attr]
        res = run("release", "--host", "victim", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert "reconciled isolate on victim" in res.stdout
        assert "containment" not in ruleset(run.lab, "victim")
        assert nothing_left(run.status())

    def test_ctrl_c_mid_action_exits_130_and_leaves_a_consistent_journal(self, run: Runner):
        """Ctrl-C (SIGINT to the CLI process) while the action pauses after apply: exit 130 warm as cold; the next
        start settles what was left and the journal equals the host."""
        proc = run.popen("contain", "--host", "victim", "-p", "capture_evidence=false", "--yes",
                         env={"AGENT_FAILPOINTS": "after-apply:pause"})
        wait_until(lambda: "containment" in ruleset(run.lab, "victim"), what="the isolation to be applied")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "journal is consistent" in err
        res = run("sweep", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        status = run.status()
        assert status["unfinished"] == [] and status["in_doubt"] == []
        contained = [a for a in status["active"] if a["action"] == "isolate"]
        assert ("containment" in ruleset(run.lab, "victim")) == bool(contained)
        assert run("release", "--host", "victim", "--yes").returncode == 0
        assert "containment" not in ruleset(run.lab, "victim")
