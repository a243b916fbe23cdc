"""``agent check-config`` refuses WinRM transports that cannot work or must not be used, naming host and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent import exitcodes
from agent.cli import main


def _config(tmp_path: Path, options: str) -> Path:
    (tmp_path / "inventory.yaml").write_text(f"""\
management:
  addresses: [10.0.0.5]
hosts:
  win01:
    address: 10.0.0.21
    os: windows
    credentials: {{username: Administrator, password: env:WIN01_PASSWORD}}
    options: {options}
""")
    (tmp_path / "agent.yaml").write_text("inventory: inventory.yaml\ndatabase: agent.db\naudit_dir: audit\n")
    return tmp_path / "agent.yaml"


class TestCheckConfigWinRM:
    def test_credssp_is_a_problem(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """transport credssp fails check-config with the host, the line and the reason."""
        cfg = _config(tmp_path, "{transport: credssp}")
        assert main(["check-config", "-c", str(cfg), "--json"]) == exitcodes.USAGE
        problems = json.loads(capsys.readouterr().out)["problems"]
        assert any("win01" in p and "credssp" in p and "inventory.yaml:" in p for p in problems), problems

    def test_kerberos_by_ip_is_a_problem(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """transport kerberos without an FQDN fails check-config."""
        cfg = _config(tmp_path, "{transport: kerberos, realm: LAB.TEST, kdc: [10.0.0.2]}")
        assert main(["check-config", "-c", str(cfg), "--json"]) == exitcodes.USAGE
        problems = json.loads(capsys.readouterr().out)["problems"]
        assert any("server_name" in p for p in problems), problems

    def test_ntlm_over_https_is_fine(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The default transport passes."""
        cfg = _config(tmp_path, "{server_name: win01.corp.example}")
        assert main(["check-config", "-c", str(cfg), "--json"]) == exitcodes.DONE
