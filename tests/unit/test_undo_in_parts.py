"""An undo of an effect in parts (``ActionSpec.undo_in_parts``), interrupted part-way, is completed — never taken
as done because the effect is gone (issue 19; found on the real DC by
tests/integration/test_site_directory_takeover.py: one group re-added already lifts "out of privileged groups").

Against the fake connector's ``deprivilege`` (tests/unit/fake_connector.py): a host in two privileged groups
``g1``, ``g2``; the change leaves both; its undo re-reads and re-adds only the missing ones, one at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from agent.reconcile import reconcile
from agent.runbook import find_runbook
from agent.store import Action
from tests.unit.engine_env import make_env
from tests.unit.fake_connector import Crash


@pytest.fixture
def env(tmp_path: Path):
    app, world = make_env(tmp_path, retries=2)
    books = tmp_path / "runbooks"
    (books / "deprivilege-host.yaml").write_text(
        "name: deprivilege-host\ntarget: host\nsteps:\n  - {id: groups, action: deprivilege}\nrollback: none\n")
    (books / "restore-host.yaml").write_text(
        "name: restore-host\ntarget: host\nsteps:\n  - {id: groups, undo: deprivilege}\nrollback: none\n")
    world.groups["web1"] = {"g1", "g2"}
    yield app, world
    app.close()


def run(app, book: str, incident: str = "INC-P"):
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), ["web1"], {})
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="test", requested_by=app.actor, trigger="cli")
    return engine.execute(plan, incident)


def undo_row(app) -> Action:
    with app.store.session() as s:
        return s.scalars(select(Action).where(Action.kind == "undo")).one()


def test_undo_killed_part_way_is_completed_by_reconcile(env):
    """Killed after re-adding g1 of g1, g2: the effect is gone, yet reconcile completes the undo (g2 back)."""
    app, world = env
    assert run(app, "deprivilege-host").status == "done" and world.groups["web1"] == set()
    world.crash_after_restores = 1
    with pytest.raises(Crash):
        run(app, "restore-host")
    assert world.groups["web1"] == {"g1"} and undo_row(app).state == "applying"
    with app.store.session() as s:  # the crashed process is gone: owner no longer alive
        for row in s.scalars(select(Action)):
            row.owner = "gone-host:1"
    world.crash_after_restores = 0
    [out] = reconcile(app.engine())
    assert out.outcome == "done" and "what was still missing was restored" in out.detail
    assert world.groups["web1"] == {"g1", "g2"}  # before the fix: {"g1"}, and the undo journaled done
    assert undo_row(app).state == "done"


def test_undo_broken_part_way_with_the_target_readable_is_in_doubt_then_completed(env):
    """Re-adding g2 keeps failing (the retries run out) while the host still answers reads: the undo is in doubt,
    not done — the effect being gone says nothing of g2 — and its re-verification completes it."""
    app, world = env
    run(app, "deprivilege-host")
    world.group_down.add("g2")
    result = run(app, "restore-host")
    assert world.groups["web1"] == {"g1"}
    assert [o.state for o in result.outcomes] == ["in_doubt"] and result.status == "partial"
    assert undo_row(app).state == "in_doubt"  # before the fix: done, with g2 never re-added
    world.group_down.clear()
    [out] = reconcile(app.engine())
    assert out.outcome == "done" and world.groups["web1"] == {"g1", "g2"}


def test_undo_killed_after_its_last_part_still_says_it_changed_the_target(env):
    """Killed after re-adding both groups, before journaling: completing it sends nothing, and the journal still
    says the undo changed the target (it did: the dead attempt re-added them)."""
    app, world = env
    run(app, "deprivilege-host")
    world.crash_after_restores = 2
    with pytest.raises(Crash):
        run(app, "restore-host")
    assert world.groups["web1"] == {"g1", "g2"}
    with app.store.session() as s:
        for row in s.scalars(select(Action)):
            row.owner = "gone-host:1"
    world.crash_after_restores = 0
    [out] = reconcile(app.engine())
    assert out.outcome == "done" and world.groups["web1"] == {"g1", "g2"}
    assert undo_row(app).changed == 1  # completing it changed nothing, the undo did
