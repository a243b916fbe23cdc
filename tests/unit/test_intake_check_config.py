"""``agent check-config`` validates everything ``agent daemon`` reads: rules.yaml and the ``daemon:`` section.

Found: check-config said "configuration is valid", then the daemon refused to start (unknown runbook in a rule,
a misspelt daemon key, a secret that is not set).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.cli import main
from tests.unit.daemon_env import configure


def check(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main(["check-config", "-c", str(cfg), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_valid_daemon_config_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = configure(tmp_path)
    _, out = check(cfg, capsys)  # (the fake inventory has a host without credentials: not this test's concern)
    assert not [p for p in out["problems"] if "daemon." in p or "rules.yaml" in p], out
    assert any("rules.yaml" in c for c in out["checked"]) and any("daemon:" in c for c in out["checked"])
    assert any("require_timestamp: false" in w for w in out["warnings"])  # the test config opts out: said so


def test_rule_naming_an_unknown_runbook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg, _ = configure(tmp_path, rules_extra="  - name: bad\n    runbook: no-such-book\n")
    code, out = check(cfg, capsys)
    assert code == 2 and any("no-such-book" in p for p in out["problems"])


def test_daemon_typo_and_missing_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = configure(tmp_path)
    cfg.write_text(cfg.read_text().replace("  max_body_bytes: 4096\n", "  max_body_byte: 4096\n"))
    code, out = check(cfg, capsys)
    assert code == 2 and any("daemon.max_body_byte" in p for p in out["problems"])
    cfg.write_text(cfg.read_text().replace("  max_body_byte: 4096\n", ""))
    monkeypatch.delenv("TEST_GEN_TOKEN")
    code, out = check(cfg, capsys)
    assert code == 2 and any("daemon.sources.gen.token" in p and "TEST_GEN_TOKEN" in p for p in out["problems"])
