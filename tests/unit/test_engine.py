"""Engine behaviour against a stateful fake target: journal, idempotence, retries, rollback, reconciliation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from agent.errors import GuardRefused, InputError, NotFound
from agent.reconcile import reconcile
from agent.runbook import find_runbook
from agent.store import Action, Transition
from tests.unit.engine_env import make_env
from tests.unit.fake_connector import AuthError, Crash, Unreachable


def run(app, book: str, hosts: list[str], incident: str = "INC-T", **params):
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), hosts, params)
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="test", requested_by=app.actor, trigger="cli")
    return engine.execute(plan, incident), plan


def states(app) -> list[tuple[str, str, str, str]]:
    with app.store.session() as s:
        return [(a.target, a.kind, a.action, a.state) for a in s.scalars(select(Action).order_by(Action.seq))]


@pytest.fixture
def env(tmp_path: Path):
    app, world = make_env(tmp_path)
    yield app, world
    app.close()


class TestPlanGuards:
    def test_protected_host_refused_before_connecting(self, env):
        """A host listed in protected.hosts is refused at planning time, with no connection opened."""
        app, world = env
        with pytest.raises(GuardRefused, match="protected.hosts"):
            app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["dc1"])
        assert world.opens == 0

    def test_protected_cidr_refused(self, env):
        """A host whose address lies in a protected range is refused."""
        app, world = env
        with pytest.raises(GuardRefused, match="10.9.9.0/24"):
            app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["vault"])
        assert world.opens == 0

    @pytest.mark.parametrize("name", ["web1;rm -rf /", "web1\nweb2", "", "-web1", "a" * 70, "wéb1"])
    def test_malformed_host_name(self, env, name):
        """Malformed host names are rejected with the field named, before anything runs."""
        app, _world = env
        with pytest.raises(InputError, match="host"):
            app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), [name])

    def test_unknown_host_lists_known(self, env):
        """An unknown host name says which hosts exist."""
        app, _ = env
        with pytest.raises(NotFound, match="known hosts: .*web1"):
            app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["nope"])

    def test_plan_has_previews_and_evidence_first(self, env):
        """The plan captures evidence before isolating and previews the exact commands."""
        app, _ = env
        plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web1"])
        assert [a.action for a in plan.actions] == ["capture_evidence", "isolate"]
        assert "keep 10.9.0.10" in plan.actions[1].preview[0]


class TestExecution:
    def test_isolate_journals_every_transition(self, env):
        """Each state transition is committed to the journal in order."""
        app, world = env
        result, _ = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert result.status == "done" and world.isolated["web1"]
        with app.store.session() as s:
            row = s.scalars(select(Action)).one()
            trail = [t.to_state for t in s.scalars(select(Transition).where(Transition.action_id == row.id)
                                                   .order_by(Transition.id))]
        assert trail == ["intent", "snapshotted", "applying", "verifying", "done"]
        assert row.snapshot == {"ruleset": "baseline", "was_isolated": False}

    def test_second_contain_is_noop_and_release_restores(self, env):
        """A second isolate changes nothing; release undoes only the real change, exactly once."""
        app, world = env
        run(app, "isolate-host", ["web1"], capture_evidence=False)
        result, _ = run(app, "isolate-host", ["web1"], incident="INC-2", capture_evidence=False)
        assert result.outcomes[0].changed is False and world.applies["web1"] == 1
        result, plan = run(app, "release-host", ["web1"], incident="INC-3")
        assert len(plan.actions) == 1 and result.status == "done"
        assert world.isolated["web1"] is False and world.rules["web1"] == "baseline"
        _, plan = run(app, "release-host", ["web1"], incident="INC-4")
        assert plan.actions == [] and "nothing to undo" in plan.notes[0]

    def test_transient_errors_retried_then_succeed(self, env):
        """Unreachable twice then reachable: the action completes after bounded retries."""
        app, world = env
        world.fail_open["web1"] = [Unreachable, Unreachable]
        result, _ = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert result.status == "done" and world.opens == 3

    def test_unreachable_fails_after_bounded_retries(self, env):
        """Always unreachable: fails after exactly `retries` attempts with a clear error."""
        app, world = env
        world.fail_open["web1"] = [Unreachable] * 10
        result, _ = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert result.status == "failed" and world.opens == 3
        assert result.outcomes[0].error_kind == "unreachable"
        assert states(app)[-1][3] == "failed"

    def test_permanent_error_not_retried(self, env):
        """An authentication failure fails at once."""
        app, world = env
        world.fail_open["web1"] = [AuthError]
        result, _ = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert result.status == "failed" and world.opens == 1 and result.outcomes[0].error_kind == "auth"

    def test_timeout_after_apply_reads_state_instead_of_reapplying(self, env):
        """A timeout whose change actually landed is confirmed by verify, not applied twice."""
        app, world = env
        world.timeout_after_apply.add("web1")
        result, _ = run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert result.status == "done" and world.applies["web1"] == 1

    def test_partial_failure_across_hosts(self, env):
        """One host failing does not stop the others; the run is partial."""
        app, world = env
        world.fail_open["web2"] = [AuthError]
        result, _ = run(app, "isolate-host", ["web1", "web2", "web3"], capture_evidence=False)
        assert result.status == "partial" and result.failed_subjects() == {"web2"}
        assert world.isolated.get("web1") and world.isolated.get("web3")

    def test_rollback_reverse_on_failed_step(self, env):
        """A failing later step undoes the earlier ones in reverse order."""
        app, world = env
        result, _ = run(app, "two-steps", ["web1"])
        assert result.status == "failed"
        assert world.isolated["web1"] is False
        assert [s[1:] for s in states(app)] == [("apply", "isolate", "done"), ("apply", "fail_step", "failed"),
                                                ("undo", "isolate", "done")]

    def test_evidence_stored_with_hashes(self, env):
        """Evidence from a read-only step becomes files whose hashes are in the journal."""
        app, _world = env
        result, _ = run(app, "isolate-host", ["web1"])
        assert result.status == "done"
        with app.store.session() as s:
            ev = s.scalars(select(Action).where(Action.action == "capture_evidence")).one()
        files = ev.result["details"]["evidence_files"]
        assert files and len(files[0]["sha256"]) == 64


class TestReconcile:
    def test_crash_between_apply_and_verify_reconciled_once(self, env):
        """A process dying after apply leaves 'applying'; reconcile verifies and marks done without re-applying."""
        app, world = env
        world.crash_after_apply.add("web1")
        with pytest.raises(Crash):
            run(app, "isolate-host", ["web1"], capture_evidence=False)
        assert states(app)[-1][3] == "applying"
        with app.store.session() as s:  # the crashed process is gone: owner no longer alive
            for row in s.scalars(select(Action)):
                row.owner = "gone-host:1"
        world.crash_after_apply.clear()
        outcomes = reconcile(app.engine())
        assert [o.outcome for o in outcomes] == ["done"] and world.applies["web1"] == 1
        assert "not re-applied" in outcomes[0].detail
        assert states(app)[-1][3] == "done"

    def test_interrupted_before_apply_is_completed_once(self, env):
        """An action left in 'intent' (nothing applied) is applied exactly once by reconcile."""
        app, world = env
        world.fail_apply["web1"] = [Crash]
        with pytest.raises(Crash):
            run(app, "isolate-host", ["web1"], capture_evidence=False)
        with app.store.session() as s:
            for row in s.scalars(select(Action)):
                row.owner = "gone-host:1"
        outcomes = reconcile(app.engine())
        assert outcomes[0].outcome == "done" and world.applies["web1"] == 1

    def test_live_owner_not_touched(self, env):
        """Actions owned by a live process are left alone."""
        app, world = env
        world.crash_after_apply.add("web1")
        with pytest.raises(Crash):
            run(app, "isolate-host", ["web1"], capture_evidence=False)
        import os
        import socket
        with app.store.session() as s:
            for row in s.scalars(select(Action)):
                row.owner = f"{socket.gethostname()}:{os.getppid()}"
        assert reconcile(app.engine()) == []
