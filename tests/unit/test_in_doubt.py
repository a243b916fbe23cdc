"""`in_doubt`: a change that may have reached the target is never recorded as failed (issue 12).

Against the stateful fake target: the connection drops after the ruleset was sent (half of it landed, or all
of it); the journal says in_doubt (or done once the state read back shows the effect), the run is partial,
reconciliation verifies first and completes from the *journaled* snapshot, undo treats it as applied, the
incident is not "contained" until every action is verified, and the daemon re-verifies on a backoff schedule.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from agent import scheduler
from agent.reconcile import reconcile
from agent.runbook import find_runbook
from agent.store import Action, Incident
from tests.unit.engine_env import make_env


def run(app, book: str, hosts: list[str], incident: str = "INC-D", **params):
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), hosts, params)
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="test", requested_by=app.actor, trigger="cli")
    return engine.execute(plan, incident)


def rows(app) -> list[Action]:
    with app.store.session() as s:
        return list(s.scalars(select(Action).order_by(Action.seq)))


def incident_status(app, incident: str = "INC-D") -> str:
    with app.store.session() as s:
        return s.get(Incident, incident).status  # type: ignore[union-attr]


@pytest.fixture
def env(tmp_path: Path):
    app, world = make_env(tmp_path, retries=2)
    yield app, world
    app.close()


class TestRecordedInDoubt:
    def test_reset_after_a_partial_apply_is_in_doubt_not_failed(self, env):
        """Half the ruleset landed, then the connection dropped: in_doubt, run partial, incident not contained."""
        app, world = env
        world.reset_after_apply["web1"] = "half"
        result = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert [o.state for o in result.outcomes] == ["in_doubt"]
        assert result.status == "partial"
        row = rows(app)[-1]
        assert row.state == "in_doubt" and row.error_kind == "unreachable"
        assert row.snapshot == {"ruleset": "baseline", "was_isolated": False}
        assert incident_status(app) == "partial"
        assert world.rules["web1"] == "half-applied"

    def test_reset_after_a_full_apply_is_confirmed_by_reading_back(self, env):
        """All of it landed before the drop: the state read on a fresh session shows it — done, applied once."""
        app, world = env
        world.reset_after_apply["web1"] = "all"
        result = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert result.status == "done" and world.applies["web1"] == 1
        assert rows(app)[-1].state == "done" and incident_status(app) == "contained"
        assert "confirmed by reading state" in result.outcomes[0].summary

    def test_unreachable_before_anything_was_sent_is_failed(self, env):
        """Nothing was sent (the target never answered): that, and only that, is failed."""
        app, world = env
        world.down.add("web1")
        result = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert result.status == "failed" and rows(app)[-1].state == "failed"


class TestResolvingDoubt:
    def test_next_start_verifies_then_completes_from_the_journaled_snapshot(self, env):
        """Reconcile reads the state, applies once from the journaled snapshot (no new snapshot of the half-changed
        target), and a release then restores the true original, not the half-applied state."""
        app, world = env
        world.reset_after_apply["web1"] = "half"
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert world.snapshots["web1"] == 1
        world.down.discard("web1")  # the host is back
        outcomes = reconcile(app.engine())
        assert [o.outcome for o in outcomes] == ["done"] and "was in doubt" in outcomes[0].detail
        assert world.snapshots["web1"] == 1 and world.isolated["web1"]
        assert rows(app)[-1].state == "done" and incident_status(app) == "contained"
        result = run(app, "release-host", ["web1"], incident="INC-R")
        assert result.status == "done" and world.rules["web1"] == "baseline" and not world.isolated["web1"]

    def test_effect_present_is_marked_done_without_applying_again(self, env):
        """If the change turns out to be in effect, resolution records done and applies nothing."""
        app, world = env
        world.reset_after_apply["web1"] = "half"
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        world.down.discard("web1")
        world.isolated["web1"], world.rules["web1"] = True, "containment"  # the rest landed late
        applies = world.applies["web1"]
        assert [o.outcome for o in reconcile(app.engine())] == ["done"]
        assert world.applies["web1"] == applies

    def test_still_unreachable_stays_in_doubt(self, env):
        """A target still unreachable at the next start: the action stays in doubt (never failed)."""
        app, world = env
        world.reset_after_apply["web1"] = "half"
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert [o.outcome for o in reconcile(app.engine())] == ["in_doubt"]
        assert rows(app)[-1].state == "in_doubt"

    def test_release_treats_in_doubt_as_applied_and_restores_the_snapshot(self, env):
        """`release` undoes an action in doubt: reads the real state and restores the journaled snapshot."""
        app, world = env
        world.reset_after_apply["web1"] = "half"
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        world.down.discard("web1")
        plan = app.planner().build(find_runbook(app.settings.runbooks, "release-host"), ["web1"], {})
        assert len(plan.actions) == 1 and "in doubt since" in plan.actions[0].preview[0]
        engine = app.engine()
        engine.journal.open_incident("INC-D", title="t", reason="", requested_by="", trigger="cli")
        result = engine.execute(plan, "INC-D")
        assert result.status == "done" and world.rules["web1"] == "baseline"
        original = rows(app)[0]
        assert original.undone_at is not None and original.state == "done"
        assert reconcile(app.engine()) == []  # undone: never re-verified and re-applied later
        assert incident_status(app) == "released"

    def test_two_resolvers_never_both_act(self, env):
        """The claim is a compare-and-swap: a second resolver of the same row does nothing."""
        app, world = env
        world.reset_after_apply["web1"] = "half"
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        world.down.discard("web1")
        stale = rows(app)[-1]
        engine = app.engine()
        assert engine.journal.claim(stale)
        other = app.engine()
        again = rows(app)[-1]
        again.owner = "someone-else:1:1"  # what the other process read before our claim
        out = other.runner.resolve(again, app.planner().entry_for(again))
        assert out.outcome == "skipped" and world.applies["web1"] == 1


class TestDaemonRecheck:
    """The daemon's `recheck:<id>` job replaced `retry:<id>`: verify first, never re-snapshot, backoff."""

    @pytest.fixture
    def svc(self, env):
        app, world = env
        engine = app.engine()
        calls: list[tuple[str, int, object]] = []
        stub = SimpleNamespace(
            app=app, store=app.store, audit=app.audit, engine=engine,
            config=SimpleNamespace(retry_interval=timedelta(seconds=60)),
            runner=SimpleNamespace(locked=lambda targets: contextlib.nullcontext(), engine=engine),
            scheduler=SimpleNamespace(schedule_recheck=lambda i, n, when: calls.append(("recheck", n, when)),
                                      schedule_release=lambda i, when: calls.append(("release", 0, when))),
            metrics=SimpleNamespace(job_latency=SimpleNamespace(
                labels=lambda name: SimpleNamespace(observe=lambda v: None))))
        scheduler._RUNTIME = stub
        yield app, world, calls
        scheduler._RUNTIME = None

    def test_in_doubt_is_verified_and_completed_without_a_new_snapshot(self, svc):
        """The job resolves the action from its journaled snapshot; no second snapshot is taken."""
        app, world, calls = svc
        world.reset_after_apply["web1"] = "half"
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        world.down.discard("web1")
        scheduler.recheck_action(rows(app)[-1].id, 1)
        assert rows(app)[-1].state == "done" and world.snapshots["web1"] == 1 and calls == []
        assert len(rows(app)) == 1  # the same action was completed; nothing re-planned

    def test_unreachable_is_rechecked_later_with_backoff(self, svc):
        """Still unreachable: stays in doubt and the next check is scheduled later each time (capped)."""
        app, world, calls = svc
        world.reset_after_apply["web1"] = "half"
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        scheduler.recheck_action(rows(app)[-1].id, 3)
        assert rows(app)[-1].state == "in_doubt"
        assert [(c[0], c[1]) for c in calls] == [("recheck", 4)]
        assert scheduler.recheck_delay(timedelta(seconds=60), 4) == timedelta(minutes=8)
        assert scheduler.recheck_delay(timedelta(seconds=60), 30) == timedelta(hours=1)



class TestSweepWithNothingDue:
    def test_sweep_with_nothing_expired_undoes_nothing(self, env):
        """`agent sweep` when no TTL is due plans nothing (an empty id list once meant every active item)."""
        app, _world = env
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        planner = app.planner()
        from agent.store import utcnow
        rows = planner.active_actions(None, expired_before=utcnow())
        assert rows == [] and planner.build_undo(rows, "ttl-sweep").actions == []
