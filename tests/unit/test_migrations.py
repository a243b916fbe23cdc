"""The journal's schema is migrated by Alembic: old journals upgrade in place, models never drift from migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from agent.migrations import HEAD, current_revision
from agent.migrations.__main__ import schema_diff
from agent.migrations.runner import SchemaError, alembic_config
from agent.runbook import find_runbook
from agent.store import Action, ActionItem, Alert, Approval, Incident, Store, Transition
from tests.unit.engine_env import make_env

V0_DUMP = Path(__file__).with_name("fixtures") / "journal_v0.sql"


def _load_v0(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.executescript(V0_DUMP.read_text())
    conn.close()


def test_exactly_one_head_and_it_is_HEAD():
    """Two revisions chained on the same parent (two branches merged without a merge revision) fail here."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads == [HEAD], f"migration heads {heads}; agent.migrations.HEAD = {HEAD!r}"


def test_models_equal_migrated_schema(tmp_path: Path):
    """A model change without a revision (or a revision that differs from the models) shows up as a diff."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    Store(url).close()
    assert schema_diff(url) == []


def test_journal_of_the_pre_alembic_release_upgrades_and_releases(tmp_path: Path):
    """A journal written by the release before Alembic (create_all, active containments in it) is adopted in
    place on open: nothing lost, schema equal to the models, and its isolated host can then be released."""
    _load_v0(tmp_path / "var" / "agent.db")
    app, world = make_env(tmp_path)
    world.isolated["web1"] = True  # the state the v0 run left on the target
    world.rules["web1"] = "containment"
    try:
        with app.store.session() as s:
            assert s.scalar(select(func.count()).select_from(Action)) == 5
            assert s.scalar(select(func.count()).select_from(Transition)) > 5
            assert s.scalar(select(func.count()).select_from(Alert)) == 1
            assert s.scalar(select(func.count()).select_from(Approval)) == 1
            assert s.get(Incident, "INC-V0") is not None
        assert current_revision(app.store.engine) == HEAD
        assert schema_diff(app.settings.database_url()) == []
        active = {(a.connector, a.action, a.subject) for a in app.planner().active_actions(None)}
        assert active == {("ssh_linux", "isolate", "web1"), ("active_directory", "disable_account", "jdoe"),
                          ("firewall", "block_ip", "198.51.100.7")}
        plan = app.planner().build(find_runbook(app.settings.runbooks, "release-host"), ["web1"])
        assert [a.action for a in plan.actions] == ["isolate"] and plan.actions[0].snapshot
        result = app.engine().execute(plan, "INC-V0")
        assert result.status == "done"
        assert world.isolated["web1"] is False and world.rules["web1"] == "baseline"
        assert {a.subject for a in app.planner().active_actions(None)} == {"jdoe", "198.51.100.7"}
    finally:
        app.close()


def test_apscheduler_table_is_not_the_migrations_business(tmp_path: Path):
    """The daemon's job store table lives in the same database; the comparison must neither drop nor add it."""
    db = tmp_path / "agent.db"
    _load_v0(db)
    url = f"sqlite:///{db}"
    Store(url).close()
    assert schema_diff(url) == []
    names = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "apscheduler_jobs" in names


def test_journal_of_a_newer_agent_is_refused_untouched(tmp_path: Path):
    """An agent must not run on a schema it does not know (a newer agent's journal): clear error, no change."""
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    Store(url).close()
    conn = sqlite3.connect(tmp_path / "agent.db")
    conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="9999_from_the_future.*newer agent"):
        Store(url)


def test_open_at_head_does_not_import_alembic(tmp_path: Path):
    """Every CLI command opens the store: at HEAD it costs one SELECT, not Alembic's ~0.3 s import."""
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    Store(url).close()
    code = f"import sys; from agent.store import Store; Store({url!r}).close(); print('alembic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_concurrent_first_opens_create_one_schema(tmp_path: Path):
    """The CLI and the daemon may open a new (or pre-Alembic) journal at the same moment: both succeed."""
    db = tmp_path / "agent.db"
    _load_v0(db)
    code = f"from agent.store import Store; Store('sqlite:///{db}').close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert sqlite3.connect(db).execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]


def test_pre_alembic_containments_get_items(tmp_path: Path):
    """Revision 0002 backfills items from journaled args, so undo matching (which reads items) finds the
    containments of the old release by canonical identity — whatever the spelling asked for now."""
    from agent.batching import active_items
    db = tmp_path / "agent.db"
    _load_v0(db)
    store = Store(f"sqlite:///{db}")
    try:
        with store.session() as s:
            got = sorted((a.action, i.canonical, i.requested, i.state, i.changed, i.undone_at is not None)
                         for a, i in s.execute(select(Action, ActionItem).join(ActionItem)))
        assert ("block_ip", "net:198.51.100.7/32", "198.51.100.7", "done", 1, False) in got
        assert ("disable_account", "name:jdoe", "jdoe", "done", 1, False) in got
        assert ("isolate", "host:web1", "web1", "done", 1, False) in got
        assert ("isolate", "host:web2", "web2", "done", 1, True) in got  # released in v0
        found = active_items(store, keys=["net:198.51.100.7/32"], action="block_ip")
        assert [row.subject for row, _ in found.values()] == ["198.51.100.7"]
        found = active_items(store, action="disable_account", names=["JDOE"])
        assert [row.subject for row, _ in found.values()] == ["jdoe"]
    finally:
        store.close()
