"""`agent contain --host X` with `os: windows` in the inventory goes through winrm_windows with no other change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.cli import main
from tests.doubles.wsman import WindowsHost, WSManDouble
from tests.integration.winrm.conftest import PASSWORD, PKI, USER

REPO = Path(__file__).resolve().parents[3]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"  # shipped as package data


@pytest.fixture
def win_double(host: WindowsHost, pki: PKI) -> Iterator[WSManDouble]:
    with WSManDouble(host, tls=pki.server, users={USER: PASSWORD}, address="127.0.0.2") as dbl:
        yield dbl


@pytest.fixture
def config(tmp_path: Path, win_double: WSManDouble, pki: PKI, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AGENT_NO_WARM", "1")
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
    data: [ssn]
    residents: {{MA: null}}
""")
    (tmp_path / "agent.yaml").write_text(
        "inventory: inventory.yaml\n"
         f"runbooks: {RUNBOOKS}\ndatabase: agent.db\naudit_dir: audit\nevidence_dir: evidence\n"
        "ssh: {connect_timeout: 2, command_timeout: 5}\nengine: {retries: 2, backoff: 0.1}\n")
    return tmp_path / "agent.yaml"


class TestWindowsRoute:
    def test_contain_and_release_windows_host(self, config: Path, host: WindowsHost,
                                              capsys: pytest.CaptureFixture[str]):
        """Contain isolates through the IR-Containment rule group; release restores profiles and rules exactly."""
        import copy
        before = (copy.deepcopy(host.profiles), sorted(copy.deepcopy(host.rules), key=lambda r: r.name))
        assert main(["contain", "--host", "win01", "-c", str(config), "--yes", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["status"] == "done"
        assert {o["step"] for o in out["outcomes"]} == {"evidence", "isolate"}
        assert host.group_rules("IR-Containment")
        assert all(p.inbound == "Block" and p.outbound == "Block" for p in host.profiles.values())
        assert main(["contain", "--host", "win01", "-c", str(config), "--yes", "--json",
                     "-p", "capture_evidence=false"]) == 0
        assert json.loads(capsys.readouterr().out)["outcomes"][0]["changed"] is False
        assert main(["release", "--host", "win01", "-c", str(config), "--yes", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["status"] == "done"
        after = (host.profiles, sorted(host.rules, key=lambda r: r.name))
        assert after == before
        assert (config.parent / "evidence").exists()
