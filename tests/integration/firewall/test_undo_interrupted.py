"""An undo of a batch on a device, killed after the device accepted some of its lines, is finished by the next
command's reconciliation — never taken as done because the block is "no longer in effect" (issue 19).

The undo of ``block-ip`` of 52 addresses removes them one line each, typed ahead 50 lines per round trip; killed
(``batch-after-item:1``, the real ``agent`` CLI SIGKILLs itself) after the device answered the first line, the
device has executed the first round trip (the group's context line and 49 addresses) and never saw the last
three (nor the save), and ``block_ip``'s read-back already says "not in effect" (one address missing is enough).
The same for ``unblock_ip``'s undo (blocking the addresses again): one re-blocked lifts "no address is in the
block group". The next command must complete the undo from the journaled snapshot (``ActionSpec.undo_in_parts``),
so the device ends exactly as before (running and saved), and the journal says the undo is done for every item.
Against the IOS simulator (netmiko's real driver over SSH on loopback; tests/doubles/vendor_cli, FIDELITY.md).
Fails on the old code: the sweep marked the undo done with three addresses still blocked.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import paramiko
import pytest

from tests.doubles.vendor_cli import CliSimulator
from tests.integration.firewall.cli_env import SimCli

# more than one round trip of typed-ahead lines (Dialect.pipeline = 50): a kill after the device answered the
# first line leaves the first round trip executed (the device runs what was typed ahead), the rest never sent
ADDRS = [f"45.77.2.{i}" for i in range(1, 53)]
CANON = set(ADDRS)


def journal(root: Path, action: str, kind: str) -> tuple[str, str, list[str]]:
    """(state, last detail, item states) of the one ``action`` row of ``kind``."""
    db = sqlite3.connect(root / "agent.db")
    try:
        [(aid, state)] = db.execute("select id, state from actions where action = ? and kind = ?",
                                    (action, kind)).fetchall()
        [(detail,)] = db.execute("select detail from transitions where action_id = ? order by rowid desc limit 1",
                                 (aid,)).fetchall()
        items = [s for (s,) in db.execute("select state from action_items where action_id = ? order by position",
                                          (aid,))]
    finally:
        db.close()
    return state, detail, items


@pytest.fixture
def env(sim_factory: Callable[..., CliSimulator], tmp_path: Path,
        host_key: paramiko.PKey) -> tuple[SimCli, CliSimulator]:
    ios = sim_factory("cisco_ios")
    return SimCli(tmp_path, host_key, {"edge": ("cisco_ios", ios)}), ios


def test_undo_of_a_block_killed_after_one_removal_is_completed_by_the_next_command(
        env: tuple[SimCli, CliSimulator], monkeypatch: pytest.MonkeyPatch) -> None:
    cli, ios = env
    res = cli("block-ip", *ADDRS, "--reason", "c2", "--incident", "INC-FW", "--yes", "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ios.state.blocklist == CANON
    monkeypatch.setenv("AGENT_FAILPOINTS", "batch-after-item:1")
    res = cli("release", "--incident-all", "INC-FW", "--reason", "over", "--yes")
    assert res.returncode == -9, res.stdout + res.stderr
    left = ios.state.blocklist
    assert 0 < len(left) < len(ADDRS), left  # the first round trip removed, the rest still blocked
    assert journal(cli.root, "block_ip", "undo")[0] == "applying"
    monkeypatch.delenv("AGENT_FAILPOINTS")
    res = cli("sweep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ios.state.blocklist == set() and ios.state.saved_blocklist == set()  # exactly the snapshot
    state, detail, items = journal(cli.root, "block_ip", "undo")
    assert state == "done" and "what was still missing was restored" in detail, detail
    assert items == ["done"] * len(ADDRS)
    status = json.loads(cli("status", "--json").stdout)
    assert status["active"] == [] and status["in_doubt"] == [] and status["unfinished"] == [], status


def test_undo_of_an_unblock_killed_after_one_reblock_is_completed_by_the_next_command(
        env: tuple[SimCli, CliSimulator], monkeypatch: pytest.MonkeyPatch) -> None:
    cli, ios = env
    assert cli("block-ip", *ADDRS, "--reason", "c2", "--yes").returncode == 0
    res = cli("unblock-ip", *ADDRS, "--reason", "false positive", "--incident", "INC-UN", "--yes")
    assert res.returncode == 0 and ios.state.blocklist == set(), res.stdout + res.stderr
    monkeypatch.setenv("AGENT_FAILPOINTS", "batch-after-item:1")
    res = cli("release", "--incident-all", "INC-UN", "--reason", "it was not", "--yes")
    assert res.returncode == -9, res.stdout + res.stderr
    again = ios.state.blocklist
    assert 0 < len(again) < len(ADDRS), again  # the first round trip blocked again, the rest not
    monkeypatch.delenv("AGENT_FAILPOINTS")
    res = cli("sweep")
    assert res.returncode == 0, res.stdout + res.stderr
    assert ios.state.blocklist == CANON and ios.state.saved_blocklist == CANON
    state, detail, items = journal(cli.root, "unblock_ip", "undo")
    assert state == "done" and "what was still missing was restored" in detail, detail
    assert items == ["done"] * len(ADDRS)
