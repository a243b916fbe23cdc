"""A Windows release stopped between removing the group's rules and restoring the profiles is never journaled done
(nor "failed": it changed the host) while the profiles still block everything (issue 19).

The release is one script (connectors/winrm_windows/firewall.py ``undo_script``): remove the IR-Containment
rules, recreate the group's earlier rules, then one ``Set-NetFirewallProfile`` per profile. Stopped before the
first profile line (the WS-Management double ends the script there with "The pipeline has been stopped.",
``WindowsHost.stop_at``), the host keeps Block/Block on every profile with no allow rule — and the read-back
already says "not isolated" (the group's rules are gone). The old code journaled the stopped release "failed"
(a PowerShell error is a refusal: nothing changed — untrue) and a release whose agent was killed there "done"
("target shows the undo in effect; not re-applied"); either way nothing ever restored the profiles. Now the
first is in doubt and the next command (``agent sweep``) completes both from the journaled snapshot: profiles and
rules exactly as before, the journal says so. The apply has the same shape (rules written, then the profiles
blocked): stopped in between, it is in doubt (was "failed") and applied once by the next command.
"""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cli import main
from tests.doubles.wsman import WindowsHost, WSManDouble
from tests.integration.winrm.conftest import PASSWORD, PKI, USER

REPO = Path(__file__).resolve().parents[3]
PROFILE_LINE = "Set-NetFirewallProfile -Name "  # the release's restore lines (apply sets them with -All)


@pytest.fixture
def win_double(host: WindowsHost, pki: PKI) -> Iterator[WSManDouble]:
    with WSManDouble(host, tls=pki.server, users={USER: PASSWORD}, address="127.0.0.2") as dbl:
        yield dbl


@pytest.fixture
def config(tmp_path: Path, win_double: WSManDouble, pki: PKI, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENT_NO_WARM", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("WIN01_PASSWORD", PASSWORD)
    (tmp_path / "inventory.yaml").write_text(f"""\
management:
  addresses: [127.0.0.1]
hosts:
  win01:
    address: 127.0.0.2
    os: windows
    credentials: {{username: {USER}, password: env:WIN01_PASSWORD}}
    options: {{port: {win_double.port}, ca_file: {pki.ca_file}, server_name: winhost.test}}
""")
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {REPO / 'agent' / 'data' / 'runbooks'}\ndatabase: agent.db\n"
        "audit_dir: audit\nevidence_dir: evidence\nengine: {retries: 2, backoff: 0.1}\n")
    return tmp_path / "agent.yaml"


def fw_state(host: WindowsHost) -> tuple[Any, Any]:
    with host.lock:
        return copy.deepcopy(host.profiles), sorted(copy.deepcopy(host.rules), key=lambda r: r.name)


def half_released(host: WindowsHost) -> bool:
    """The group's rules removed, every profile still Block/Block: nothing reaches the host, not even WinRM."""
    with host.lock:
        return not host.group_rules("IR-Containment") and all(
            p.inbound == "Block" and p.outbound == "Block" for p in host.profiles.values())


def undo_row(config: Path) -> tuple[str, list[str]]:
    db = sqlite3.connect(config.parent / "agent.db")
    try:
        [(aid, state)] = db.execute("select id, state from actions where action = 'isolate' and kind = 'undo'")
        details = [d for (d,) in db.execute("select detail from transitions where action_id = ? order by rowid",
                                            (aid,))]
    finally:
        db.close()
    return state, details


def contain(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["contain", "--host", "win01", "-c", str(config), "--yes", "--json", "-p", "capture_evidence=false"])
    assert code == 0, capsys.readouterr()
    capsys.readouterr()


def completed_by_sweep(config: Path, host: WindowsHost, before: tuple[Any, Any],
                       capsys: pytest.CaptureFixture[str]) -> None:
    """The next command settles the release: profiles and rules exactly as before; journal and status agree."""
    assert main(["sweep", "-c", str(config)]) == 0, capsys.readouterr()
    assert fw_state(host) == before
    state, details = undo_row(config)
    assert state == "done" and "what was still missing was restored" in details[-1], details
    capsys.readouterr()
    assert main(["status", "-c", str(config), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["active"] == [] and status["in_doubt"] == [] and status["unfinished"] == [], status


def test_release_stopped_before_the_profiles_is_in_doubt_then_completed(
        config: Path, host: WindowsHost, capsys: pytest.CaptureFixture[str]) -> None:
    before = fw_state(host)
    contain(config, capsys)
    host.stop_at = PROFILE_LINE
    code = main(["release", "--host", "win01", "-c", str(config), "--yes", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 4 and out["outcomes"][0]["state"] == "in_doubt", out  # not "failed": it changed the host
    assert half_released(host)
    state, details = undo_row(config)
    assert state == "in_doubt" and "pipeline has been stopped" in details[-1], details
    completed_by_sweep(config, host, before, capsys)


def test_release_killed_before_the_profiles_is_completed_by_the_next_command(
        config: Path, host: WindowsHost, capsys: pytest.CaptureFixture[str]) -> None:
    """The agent SIGKILLed while the host runs the release script, which then stops before the profiles: the
    undo is left ``applying`` by a dead process, and the host reads "not isolated"."""
    before = fw_state(host)
    contain(config, capsys)
    go = threading.Event()
    host.stop_at, host.stop_go = PROFILE_LINE, go
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "agent"), "release", "--host", "win01", "-c", str(config),
                             "--yes"], env={**os.environ}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert host.stop_reached.wait(60), "the release never reached the profile lines"
    finally:
        proc.kill()
        proc.wait()
        go.set()
    assert proc.returncode == -9
    with host.lock:  # the script has ended (the double runs it holding the lock)
        pass
    assert half_released(host)
    assert undo_row(config)[0] == "applying"
    completed_by_sweep(config, host, before, capsys)


def apply_row(config: Path) -> tuple[str, list[str]]:
    db = sqlite3.connect(config.parent / "agent.db")
    try:
        [(aid, state)] = db.execute("select id, state from actions where action = 'isolate' and kind = 'apply'")
        details = [d for (d,) in db.execute("select detail from transitions where action_id = ? order by rowid",
                                            (aid,))]
    finally:
        db.close()
    return state, details


def test_isolation_stopped_before_the_profiles_is_in_doubt_then_completed(
        config: Path, host: WindowsHost, capsys: pytest.CaptureFixture[str]) -> None:
    """The same on the way in: the apply script stopped after writing the group's rules, before blocking the
    profiles. The host is changed (our rules in place, the profiles as they were), so the apply is in doubt, not
    "failed" (the old code: a PowerShell error taken for a refusal, while the rules stayed until the dead-man
    task fired); the next command reads "not isolated" and applies it once from the journaled snapshot."""
    before = fw_state(host)
    host.stop_at = "Set-NetFirewallProfile -All "
    code = main(["contain", "--host", "win01", "-c", str(config), "--yes", "--json", "-p", "capture_evidence=false"])
    out = json.loads(capsys.readouterr().out)
    assert code == 4 and out["outcomes"][0]["state"] == "in_doubt", out
    with host.lock:
        assert host.group_rules("IR-Containment") and (host.profiles, host.rules) != before
    assert apply_row(config)[0] == "in_doubt"
    assert main(["sweep", "-c", str(config)]) == 0, capsys.readouterr()
    state, details = apply_row(config)
    assert state == "done" and "applied once" in details[-1], details
    with host.lock:
        assert all(p.inbound == "Block" and p.outbound == "Block" for p in host.profiles.values())
        assert not host.tasks  # the dead-man task of the stopped run replaced, then deleted once confirmed
    capsys.readouterr()
    assert main(["release", "--host", "win01", "-c", str(config), "--yes"]) == 0, capsys.readouterr()
    assert fw_state(host) == before


def test_release_stopped_before_its_first_change_is_still_failed(
        config: Path, host: WindowsHost, capsys: pytest.CaptureFixture[str]) -> None:
    """Stopped before removing anything, the host reads exactly as before the script: that is a refusal, so the
    release is ``failed`` (nothing changed) and the isolation stays active for the next release."""
    contain(config, capsys)
    isolated = fw_state(host)
    host.stop_at = "Remove-NetFirewallRule -Group "
    code = main(["release", "--host", "win01", "-c", str(config), "--yes", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1 and out["outcomes"][0]["state"] == "failed", out
    assert fw_state(host) == isolated
    assert undo_row(config)[0] == "failed"
    assert main(["status", "-c", str(config), "--json"]) == 0
    assert [a["action"] for a in json.loads(capsys.readouterr().out)["active"]] == ["isolate"]
