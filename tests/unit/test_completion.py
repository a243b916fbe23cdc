"""Shell completion as a responder meets it: the real bash runs the generated script, TAB after --host offers the
inventory's hosts (also after a comma), --tag the tags, `incidents show` the journal's incident ids."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from agent import completion, journal_reads
from agent.store import Incident, Store

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    (tmp_path / "inventory.yaml").write_text(
        "management: {addresses: [192.0.2.10]}\nhosts:\n"
        "  web01: {address: 127.0.1.21, os: linux, tags: [web, outbreak], site: boston}\n"
        "  web02: {address: 127.0.1.22, os: linux, tags: [web]}\n"
        "  \"o'brien-pc\": {address: 127.0.1.23, os: linux}\n"
        "devices:\n  edge1: {address: 127.0.1.1, device_type: linux, edge: true}\n")
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {REPO / 'agent' / 'data' / 'runbooks'}\ndatabase: var/agent.db\n")
    store = Store(f"sqlite:///{tmp_path / 'var' / 'agent.db'}")  # a real journal, as the agent creates it
    with store.session() as s:
        s.add_all([Incident(id="INC-20261204-010101-aaaa", created_at=datetime(2026, 12, 4, 1, 1, 1)),
                   Incident(id="INC-20261204-020202-bbbb", created_at=datetime(2026, 12, 4, 2, 2, 2))])
    store.close()
    return tmp_path / "agent.yaml"


def complete(cfg: Path, line: str) -> list[str]:
    """What bash offers for ``line`` (the cursor at its end), with the generated script loaded."""
    script = subprocess.run([str(BIN / "agent"), "completion", "bash"], capture_output=True, text=True,
                            check=True).stdout
    words = line.split(" ")
    probe = (f"{script}\nCOMP_WORDS=({' '.join(_q(w) for w in words)}); COMP_CWORD={len(words) - 1}\n"
             "_agent_complete; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = {**os.environ, "AGENT_CONFIG": str(cfg), "PATH": f"{BIN}:{os.environ['PATH']}", "AGENT_NO_WARM": "1"}
    out = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, env=env, check=True)
    return [w for w in out.stdout.splitlines() if w]


def _q(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


class TestBash:
    def test_commands(self, cfg: Path):
        assert "contain" in complete(cfg, "agent con") and "connectors" in complete(cfg, "agent con")

    def test_hosts_after_host_option(self, cfg: Path):
        """--host offers inventory names, including one with a quote in it (inserted shell-quoted)."""
        assert complete(cfg, "agent contain --host ") == ["o\\'brien-pc", "web01", "web02"]
        assert complete(cfg, "agent contain --host we") == ["web01", "web02"]

    def test_hosts_after_a_comma(self, cfg: Path):
        assert complete(cfg, "agent contain --host web01,we") == ["web01,web01", "web01,web02"]

    def test_tags_sites_devices(self, cfg: Path):
        assert complete(cfg, "agent contain --tag ") == ["outbreak", "web"]
        assert complete(cfg, "agent contain --site ") == ["boston"]
        assert complete(cfg, "agent block-ip 203.0.113.9 --on ") == ["edge1"]

    def test_incident_ids_newest_first(self, cfg: Path):
        assert complete(cfg, "agent incidents show INC") == ["INC-20261204-020202-bbbb", "INC-20261204-010101-aaaa"]
        assert complete(cfg, "agent release --incident-all INC-20261204-01") == ["INC-20261204-010101-aaaa"]

    def test_options_of_a_command(self, cfg: Path):
        assert "--from-file" in complete(cfg, "agent contain --")

    def test_broken_config_completes_nothing_quietly(self, cfg: Path):
        cfg.write_text("inventory: [unclosed\n")
        assert complete(cfg, "agent contain --host ") == []


@pytest.mark.skipif(shutil.which("zsh") is None or shutil.which("fish") is None, reason="zsh/fish not installed")
class TestOtherShells:
    def test_zsh_and_fish_scripts_parse(self, cfg: Path):
        for shell in ("zsh", "fish"):
            text = subprocess.run([str(BIN / "agent"), "completion", shell], capture_output=True, text=True,
                                  check=True).stdout
            res = subprocess.run([shell, "-n" if shell == "zsh" else "--no-execute", "-c", text],
                                 capture_output=True, text=True, check=False)
            assert res.returncode == 0, res.stderr


def test_incident_ids_are_read_through_the_one_store(cfg: Path, monkeypatch: pytest.MonkeyPatch):
    """Issue 21 forbids a second query path: TAB reads incident ids with the read `incidents list` makes
    (journal_reads.recent_incidents on the store's engine), never with its own sqlite3 connection and SQL — so a
    PostgreSQL journal completes too. Fails before: completion opened the SQLite file itself."""
    import traceback
    calls: list[Any] = []
    real = journal_reads.recent_incidents
    monkeypatch.setattr(journal_reads, "recent_incidents",
                        lambda s, limit=None: calls.append(limit) or real(s, limit))
    raw: list[str] = []
    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        if not any("/sqlalchemy/" in f.filename for f in traceback.extract_stack()):
            raw.append(str(args[0] if args else kwargs.get("database")))
        return real_connect(*args, **kwargs)
    monkeypatch.setattr(sqlite3, "connect", connect)
    assert completion.list_values("incidents", cfg) == ["INC-20261204-020202-bbbb", "INC-20261204-010101-aaaa"]
    assert calls == [200] and raw == []


def test_incident_ids_never_create_a_journal(tmp_path: Path):
    """TAB before the first incident: nothing offered, and no journal file created by pressing it."""
    (tmp_path / "agent.yaml").write_text("inventory: inventory.yaml\ndatabase: var/agent.db\n")
    (tmp_path / "inventory.yaml").write_text("hosts: {}\n")
    assert completion.list_values("incidents", tmp_path / "agent.yaml") == []
    assert not (tmp_path / "var" / "agent.db").exists()
