"""In doubt on a real sshd host: the management network is cut right after the isolation ruleset was loaded.

The change reached the host but nothing can confirm it: the journal says ``in_doubt`` (not failed), the run exits
4, ``status`` lists it as in doubt; once the network is back the next command about the host verifies first,
records it done without applying again, and ``release`` restores the baseline. Cold and warm.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab
from tests.integration.engine.runs import Runner, private_config, ruleset, wait_until

pytestmark = [pytest.mark.root, pytest.mark.slow]
CUT = ("table inet labcut {\n chain out {\n  type filter hook output priority 0; policy accept;\n"
       "  ip daddr 10.77.0.20 drop\n }\n}\n")


@pytest.fixture(params=["cold", "warm"])
def run(request: pytest.FixtureRequest, clean_lab: Lab, tmp_path: Path) -> Iterator[Runner]:
    runner = Runner(clean_lab, private_config(clean_lab, tmp_path), request.param)
    cfg = runner.cfg  # short timeouts: the cut is detected in seconds
    cfg.write_text(cfg.read_text().replace("connect_timeout: 5", "connect_timeout: 2")
                   .replace('"connect_timeout": 5', '"connect_timeout": 2'))
    with runner.serving():
        yield runner


def test_network_cut_after_the_load_is_in_doubt_then_settled(run: Runner) -> None:
    """Cut after load → in_doubt, exit 4; network back → the next contain settles it (not re-applied); release
    restores the host's baseline ruleset."""
    lab = run.lab
    baseline = ruleset(lab, "victim")
    proc = run.popen("contain", "--host", "victim", "-p", "capture_evidence=false", "-p", "confirm_seconds=60",
                     "--reason", "t", "--yes", "--json", env={"AGENT_FAILPOINTS": "isolate-after-load:pause"})
    try:
        wait_until(lambda: "containment" in ruleset(lab, "victim"), what="the ruleset to be loaded")
        lab.exec("mgmt", ["nft", "-f", "-"], input=CUT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        lab.exec("mgmt", ["nft", "delete", "table", "inet", "labcut"], check=False)
    assert proc.returncode == 4, out + err
    outcome = next(o for o in json.loads(out)["outcomes"] if o["action"] == "isolate")
    assert outcome["state"] == "in_doubt", outcome
    status = run.status()
    assert [a["action"] for a in status["in_doubt"]] == ["isolate"] and status["active"] == []
    time.sleep(0.5)
    res = run("contain", "--host", "victim", "-p", "capture_evidence=false", "-p", "confirm_seconds=60",
              "--reason", "t", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "reconciled isolate on victim (in doubt): done" in res.stdout, res.stdout
    status = run.status()
    assert status["in_doubt"] == [] and [a["action"] for a in status["active"]] == ["isolate"]
    res = run("release", "--host", "victim", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ruleset(lab, "victim") == baseline
    assert not any(run.status().values())
