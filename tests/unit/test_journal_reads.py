"""One query path (issue 21: "don't add a second query path to reach a start-up number"): `agent status` reads
the journal through the store's engine and the mapped models, with the same functions (agent.journal_reads) as
`agent incidents show` and the console — never hand-written SQL over its own sqlite3 connection."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from agent import cli, journal_reads
from agent.commands import query
from agent.runbook import find_runbook
from agent.store import Action
from tests.unit.engine_env import make_env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    app, _world = make_env(tmp_path, retries=1)
    monkeypatch.setattr(query, "App", lambda config_path: app)  # the fake connector's world, not ssh
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web1"],
                               {"capture_evidence": False})
    engine = app.engine()
    engine.journal.open_incident("INC-R", title="t", reason="t", requested_by=app.actor, trigger="cli")
    assert engine.execute(plan, "INC-R").status == "done"
    yield app
    app.close()


def _spy(monkeypatch: pytest.MonkeyPatch, name: str, calls: list[tuple[str, Any]]) -> None:
    real: Callable[..., Any] = getattr(journal_reads, name)

    def spy(s: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append((name, s.get_bind()))
        return real(s, *args, **kwargs)
    monkeypatch.setattr(journal_reads, name, spy)


def _statements(app: Any) -> list[str]:
    """Every statement the store's engine runs from now on."""
    seen: list[str] = []
    event.listen(app.store.engine, "before_cursor_execute",
                 lambda _conn, _cursor, statement, *_rest: seen.append(" ".join(statement.split())))
    return seen


def _no_raw_sqlite(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """sqlite3 connections opened other than by SQLAlchemy's pool (a second path would open its own)."""
    import traceback
    raw: list[str] = []
    for module in (sqlite3, sqlite3.dbapi2):
        real = module.connect

        def connect(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if not any("/sqlalchemy/" in frame.filename for frame in traceback.extract_stack()):
                raw.append(str(args[0] if args else kwargs.get("database")))
            return _real(*args, **kwargs)
        monkeypatch.setattr(module, "connect", connect)
    return raw


def test_status_reads_the_journal_through_the_store(env, monkeypatch, capsys):
    """On a SQLite journal at the schema head (where the old journal_view read with its own sqlite3 connection and
    hand-written SQL), every section of status is read through the store's engine, by journal_reads."""
    app = env
    calls: list[tuple[str, Any]] = []
    for name in ("contained", "unfinished", "in_doubt", "transitions"):
        _spy(monkeypatch, name, calls)
    statements = _statements(app)
    raw = _no_raw_sqlite(monkeypatch)

    assert cli.main(["status", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["target"] for a in doc["active"]] == ["web1"] and doc["active"][0]["last_verified"]
    assert sorted(name for name, _ in calls) == ["contained", "in_doubt", "transitions", "unfinished"]
    assert {bind for _, bind in calls} == {app.store.engine}
    assert any("FROM actions" in s for s in statements) and any("FROM transitions" in s for s in statements)
    assert raw == []


def test_status_and_incidents_show_share_the_reads(env, monkeypatch, capsys):
    """The read-backs status shows as LAST VERIFIED are the transitions `incidents show` lists: one function."""
    app = env
    calls: list[tuple[str, Any]] = []
    _spy(monkeypatch, "transitions", calls)
    assert cli.main(["status"]) == 0
    status_calls = list(calls)
    assert cli.main(["incidents", "show", "INC-R"]) == 0
    out = capsys.readouterr().out
    assert "LAST VERIFIED" in out and "verifying" in out and "→ done" in out
    assert [bind for _, bind in status_calls] == [app.store.engine]
    assert [bind for _, bind in calls] == [app.store.engine, app.store.engine]


def test_incidents_show_lists_each_actions_transitions_in_order(env, capsys):
    app = env
    assert cli.main(["incidents", "show", "INC-R", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    with app.store.session() as s:
        [row] = list(s.query(Action).filter_by(incident_id="INC-R"))
        want = [(t.from_state, t.to_state, t.detail) for t in row.transitions]
    [action] = doc["actions"]
    assert [(t["from"], t["to"], t["detail"]) for t in action["transitions"]] == want
    assert [t["to"] for t in action["transitions"]][-1] == "done"


def test_the_console_reads_what_status_reads(env, monkeypatch):
    """The console's "contained now" goes through the same reads as status (contained, in doubt, read-backs)."""
    from agent.console.pages import contained_now

    app = env
    calls: list[tuple[str, Any]] = []
    for name in ("contained", "in_doubt", "transitions"):
        _spy(monkeypatch, name, calls)
    [shown] = contained_now(app)
    assert shown.target == "web1" and shown.verified_ok is True
    assert sorted(name for name, _ in calls) == ["contained", "in_doubt", "transitions"]
