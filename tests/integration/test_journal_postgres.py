"""The journal on a real PostgreSQL (the multi-node database): migrations, items, concurrent first opens.

A private server per test module (tests/integration/pg_server.py), stopped by its PID file at teardown.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.migrations import HEAD, current_revision
from agent.migrations.__main__ import schema_diff
from agent.runbook import find_runbook
from agent.store import Store
from tests.integration.pg_server import fresh_database, private_postgres
from tests.unit.engine_env import make_env


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    with private_postgres("journal-pg-") as url:
        yield url


_fresh = fresh_database


def test_models_equal_migrated_schema_on_postgres(pg):
    url = _fresh(pg, "fresh")
    store = Store(url)
    assert current_revision(store.engine) == HEAD
    store.close()
    assert schema_diff(url) == []


def test_concurrent_first_opens_on_postgres(pg):
    """Three processes open a new journal at once: one migrates (advisory lock), the others find it at HEAD."""
    url = _fresh(pg, "race")
    code = f"from agent.store import Store; Store({url!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    store = Store(url)
    assert current_revision(store.engine) == HEAD
    store.close()


def test_contain_and_release_journal_items_on_postgres(pg, tmp_path: Path):
    """The engine's journal (items, JSON snapshots, UTC times) round-trips on PostgreSQL."""
    url = _fresh(pg, "engine")
    app, world = make_env(tmp_path)
    app.settings.__dict__["database"] = url
    try:
        assert app.settings.database_url() == url
        engine = app.engine()
        engine.journal.open_incident("INC-PG", title="t", reason="t", requested_by=app.actor, trigger="cli")
        plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web1", "web2"],
                                   {"capture_evidence": False})
        assert engine.execute(plan, "INC-PG").status == "done"
        [row] = [r for r in app.planner().active_actions(None) if r.target == "web2"]
        undo = app.planner().build(find_runbook(app.settings.runbooks, "release-host"), ["web2"])
        assert engine.execute(undo, "INC-PG").status == "done"
        assert world.isolated == {"web1": True, "web2": False}
        assert [r.target for r in app.planner().active_actions(None)] == ["web1"] and row.expires_at is None
    finally:
        app.close()


def test_parallel_actions_get_distinct_journal_numbers_on_postgres(pg, tmp_path: Path):
    """Hosts run in parallel; each action's journal number (seq, the undo order) is unique. On PostgreSQL two
    read-committed transactions read the same maximum unless next_seq serialises them (failed before: {1, 2} for
    three actions)."""
    from sqlalchemy import select

    from agent.store import Action
    url = _fresh(pg, "seqs")
    app, _world = make_env(tmp_path)
    app.settings.__dict__["database"] = url
    try:
        engine = app.engine()
        engine.journal.open_incident("INC-SEQ", title="t", reason="t", requested_by=app.actor, trigger="cli")
        plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web1", "web2", "web3"],
                                   {"capture_evidence": False})
        assert engine.execute(plan, "INC-SEQ").status == "done"
        with app.store.session() as s:
            seqs = [r.seq for r in s.scalars(select(Action))]
        assert len(seqs) == 3 and len(set(seqs)) == 3, seqs
    finally:
        app.close()


def test_status_reads_the_same_on_postgres(pg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """`agent status` reads through the store on every database (agent/journal_reads.py): on PostgreSQL it shows
    what the models wrote, as on SQLite."""
    import json
    from datetime import timedelta

    from agent import cli
    from agent.commands import query
    from agent.store import Action

    url = _fresh(pg, "status")
    app, world = make_env(tmp_path)
    app.settings.__dict__["database"] = url
    monkeypatch.setattr(query, "App", lambda config_path: app)
    try:
        engine = app.engine()
        engine.journal.open_incident("INC-ST", title="t", reason="t", requested_by=app.actor, trigger="cli")
        plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web1"],
                                   {"capture_evidence": False})
        assert engine.execute(plan, "INC-ST", ttl=timedelta(hours=1)).status == "done"
        with app.store.session() as s:
            [want] = [a.summary() for a in s.query(Action).all()]
        assert cli.main(["status", "--json"]) == 0
        [got] = json.loads(capsys.readouterr().out)["active"]
        assert {k: got[k] for k in want} == json.loads(json.dumps(want))
        assert got["last_verified"]["result"] == "in_effect" and got["ttl"]["seconds_left"] > 3500
        assert world.isolated == {"web1": True}
    finally:
        app.close()
