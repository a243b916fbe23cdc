"""A release that stops part-way on an iptables host is never journaled done while part of the isolation is left
(issue 19), on the lab's real ``legacy`` host (no nft: the iptables fallback) through the real ``agent`` CLI.

The iptables release has parts (connectors/ssh_linux/releasing.py): the boot unit, then for ``iptables`` and then
``ip6tables`` each jump, chain flush and chain delete as its own command, then the IPv6 sysctls. Here ``ip6tables``
answers every call with exit 4 and "Another app is currently holding the xtables lock" (iptables(8): exit 4 is
a resource problem — the lock another program holds), so the IPv4 half is removed and the IPv6 half is not. The
read-back then says "not isolated" (rules present but not as expected: IPv4 open), which the old code took as
"undone (confirmed by reading state after)": the undo journaled done, the isolation marked released, and the host
left with IPv6 cut off. Now the undo is in doubt; the next command (``agent sweep``), with ``ip6tables`` back,
completes it from the journaled snapshot: both families equal the snapshot, the journal says so.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab
from agent.lab.probe import wait_until
from tests.integration.ssh_linux.helpers import REPO, cli_config, ipt_state, run_agent, stop_timers

pytestmark = pytest.mark.root
# In legacy's mount namespace /usr/sbin is a tmpfs of symlinks into /run/lab-sbin (agent/lab/sshd.py): one link
# replaced by a script changes the host's tool for every shell there; the link put back restores it.
BUSY_IP6 = ("rm -f /usr/sbin/ip6tables && printf '%s\\n' '#!/bin/sh' "
            "'echo \"Another app is currently holding the xtables lock. Perhaps you want to use the -w option?\" >&2' "
            "'exit 4' > /usr/sbin/ip6tables && chmod 755 /usr/sbin/ip6tables")
REAL_IP6 = "ln -sf /run/lab-sbin/ip6tables /usr/sbin/ip6tables"
# An ip6tables that never answers (a lock holder that does not let go), noting its shell's PID and its own (it
# becomes the sleep) so the test can cut the release script off there, as a reboot or an OOM kill would.
HUNG = "/run/cagent-test-hung"
HANG_IP6 = ("rm -f /usr/sbin/ip6tables && printf '%s\\n' '#!/bin/sh' "
            f"'echo $PPID $$ > {HUNG}' 'exec sleep 120' > /usr/sbin/ip6tables && chmod 755 /usr/sbin/ip6tables")


@pytest.fixture
def lab(clean_lab: Lab) -> Iterator[Lab]:
    stop_timers(clean_lab)
    yield clean_lab
    clean_lab.exec("legacy", ["sh", "-c", f"{REAL_IP6}; [ -f {HUNG} ] && kill -9 $(cat {HUNG}); rm -f {HUNG}"],
                   check=False)
    stop_timers(clean_lab)


def undo_row(cfg: Path) -> tuple[str, list[str]]:
    """(state, transition details) of the one undo of isolate in the journal."""
    db = sqlite3.connect(cfg.parent / "agent.db")
    try:
        [(aid, state)] = db.execute("select id, state from actions where action = 'isolate' and kind = 'undo'")
        details = [d for (d,) in db.execute("select detail from transitions where action_id = ? order by rowid",
                                            (aid,))]
    finally:
        db.close()
    return state, details


def test_release_stopped_between_ipv4_and_ipv6_is_in_doubt_then_completed(lab: Lab, tmp_path: Path) -> None:
    cfg = cli_config(lab, tmp_path)
    before = ipt_state(lab, "legacy")
    res = run_agent(lab, cfg, "contain", "--host", "legacy", "--reason", "test", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr
    isolated = ipt_state(lab, "legacy")
    assert "CAGENT_IN" in isolated.split("--")[0] and "CAGENT_IN" in isolated.split("--")[1]

    lab.exec("legacy", ["sh", "-c", BUSY_IP6])
    res = run_agent(lab, cfg, "release", "--host", "legacy", "--yes", "--json")
    assert res.returncode == 4, res.stdout + res.stderr  # not "released": part of it is still on the host
    half = ipt_state(lab, "legacy")
    assert "CAGENT" not in half.split("--")[0] and "CAGENT_IN" in half.split("--")[1]  # IPv4 open, IPv6 not
    state, details = undo_row(cfg)
    assert state == "in_doubt", details
    status = json.loads(run_agent(lab, cfg, "status", "--json").stdout)
    assert [a["action"] for a in status["in_doubt"]] == ["isolate"], status

    lab.exec("legacy", ["sh", "-c", REAL_IP6])
    res = run_agent(lab, cfg, "sweep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ipt_state(lab, "legacy") == before  # both families exactly as before the isolation
    state, details = undo_row(cfg)
    assert state == "done" and "what was still missing was restored" in details[-1], details
    assert details[-2].startswith("released (iptables); ruleset equals the snapshot"), details  # v6 removed now
    status = json.loads(run_agent(lab, cfg, "status", "--json").stdout)
    assert status["active"] == [] and status["in_doubt"] == [] and status["unfinished"] == [], status


def test_release_killed_between_ipv4_and_ipv6_is_completed_by_the_next_command(lab: Lab, tmp_path: Path) -> None:
    """The agent SIGKILLed while the release script waits on ``ip6tables`` (IPv4 already removed), and the script
    then cut off on the host: the undo is left ``applying`` by a dead process. The next command's reconciliation
    reads "not isolated" — the old code journaled "target shows the undo in effect; not re-applied" and left IPv6
    cut off — and must complete the release from the journaled snapshot."""
    cfg = cli_config(lab, tmp_path)
    before = ipt_state(lab, "legacy")
    res = run_agent(lab, cfg, "contain", "--host", "legacy", "--reason", "test", "--yes")
    assert res.returncode == 0, res.stdout + res.stderr

    lab.exec("legacy", ["sh", "-c", HANG_IP6])
    env = {**os.environ, "AGENT_CONFIG": str(cfg), "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
    proc = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-mgmt", str(REPO / ".venv" / "bin" / "agent"),
                             "release", "--host", "legacy", "--yes"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reached = lambda: len(lab.exec("legacy", ["cat", HUNG], check=False).stdout.split()) == 2  # noqa: E731
        assert wait_until(reached, 60), "the release never reached ip6tables"
    finally:
        proc.kill()  # SIGKILL: the agent dies mid-release
        proc.wait()
    lab.exec("legacy", ["sh", "-c", f"kill -9 $(cat {HUNG}); rm -f {HUNG}"])  # the script cut off on the host
    half = ipt_state(lab, "legacy")
    assert "CAGENT" not in half.split("--")[0] and "CAGENT_IN" in half.split("--")[1]  # IPv4 open, IPv6 not
    state, _ = undo_row(cfg)
    assert state == "applying"

    lab.exec("legacy", ["sh", "-c", REAL_IP6])
    res = run_agent(lab, cfg, "sweep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ipt_state(lab, "legacy") == before  # both families exactly as before the isolation
    state, details = undo_row(cfg)
    assert state == "done" and "what was still missing was restored" in details[-1], details
    assert details[-2].startswith("released (iptables); ruleset equals the snapshot"), details
    status = json.loads(run_agent(lab, cfg, "status", "--json").stdout)
    assert status["active"] == [] and status["in_doubt"] == [] and status["unfinished"] == [], status
