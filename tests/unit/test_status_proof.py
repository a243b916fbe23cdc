"""`agent status` shows proof (issue 21): when each containment was last read back and with what result, what is
in doubt, the dead-man timer its apply left on the target, and the TTL; `status --verify` journals its read-back so
the next plain `status` shows it. Driven through the CLI's entry point over the fake connector world."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from agent import cli
from agent.commands import query
from agent.runbook import find_runbook
from agent.store import Action
from tests.unit.engine_env import make_env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    app, world = make_env(tmp_path, retries=1)
    monkeypatch.setattr(query, "App", lambda config_path: app)  # the fake connector's world, not ssh
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    yield app, world, tmp_path
    app.close()


def _contain(app, hosts: list[str], incident: str = "INC-S", ttl: timedelta | None = None) -> str:
    plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), hosts,
                               {"capture_evidence": False})
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="t", requested_by=app.actor, trigger="cli")
    return engine.execute(plan, incident, ttl=ttl).status


def _status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["status", *args])
    return code, capsys.readouterr().out


def _row(out: str, target: str) -> str:
    [line] = [ln for ln in out.splitlines() if ln.startswith(f"{target} ")]
    return line


def test_status_shows_last_verification_ttl_and_in_doubt(env, capsys):
    app, world, _tmp = env
    assert _contain(app, ["web1"], ttl=timedelta(hours=2)) == "done"
    world.reset_after_apply["web2"] = "half"  # the change may have landed: in doubt, never "failed"
    assert _contain(app, ["web2"], incident="INC-D") == "partial"

    code, out = _status(capsys, "--json")
    doc = json.loads(out)
    assert code == 0 and set(doc) >= {"active", "unfinished", "in_doubt", "irreversible"}  # today's keys stay
    [web1] = doc["active"]
    assert web1["target"] == "web1" and web1["expires_at"]  # existing keys kept
    assert web1["last_verified"]["result"] == "in_effect" and web1["last_verified"]["cause"] == "apply"
    assert web1["ttl"]["overdue"] is False and 7000 < web1["ttl"]["seconds_left"] <= 7200
    assert web1["timer"] is None  # the fake connector arms no dead-man timer
    [doubt] = doc["in_doubt"]
    assert doubt["target"] == "web2" and doubt["last_verified"] is None

    code, out = _status(capsys)
    assert code == 0
    assert "LAST VERIFIED" in out and "TTL" in out
    row = _row(out, "web1")
    assert "in effect" in row and ("in 1h59m" in row or "in 2h" in row)
    assert "in doubt" in out.lower() and "web2" in _row(out, "web2")
    assert max(len(ln) for ln in out.splitlines()) <= 120


def test_status_verify_is_journaled_and_shown_by_the_next_status(env, capsys):
    """Someone flushes web2's isolation: --verify exits 4 naming it; the next plain status shows DRIFT for web2,
    in effect for web1, both verified by `status --verify`."""
    app, world, _tmp = env
    assert _contain(app, ["web1", "web2"]) == "done"
    world.isolated["web2"] = False
    code, _out = _status(capsys, "--verify")
    assert code == 4
    code, out = _status(capsys, "--json")
    got = {a["target"]: a["last_verified"] for a in json.loads(out)["active"]}
    assert got["web1"]["result"] == "in_effect" and got["web1"]["cause"] == "status --verify"
    assert got["web2"]["result"] == "drift" and "no longer in effect" in got["web2"]["summary"]
    _code, out = _status(capsys)
    assert "DRIFT" in _row(out, "web2") and "in effect" in _row(out, "web1")
    assert "Not in effect at the last read-back: web2 —" in out
    assert "(verify)" in _row(out, "web2") and "status --verify" in out  # who verified; the footnote says


def test_status_shows_the_dead_man_timer_the_journal_recorded(env, capsys):
    """ssh_linux journals its timer in result.details.deadman: armed (due) or cancelled after confirmation."""
    app, _world, _tmp = env
    assert _contain(app, ["web1", "web2"]) == "done"
    with app.store.session() as s:
        rows = {r.target: r for r in s.scalars(select(Action).where(Action.action == "isolate"))}
        rows["web1"].result = {**rows["web1"].result, "details": {"deadman": {
            "armed_seconds": 300, "pid": 4242, "token": "ab" * 16, "reverts_at": "2999-01-01T00:05:00Z",
            "confirm": "confirmed", "cancelled": True}}}
        rows["web2"].result = {**rows["web2"].result, "details": {"deadman": {
            "armed_seconds": 300, "pid": 4243, "token": "cd" * 16, "reverts_at": "2999-01-01T00:05:00Z"}}}
    code, out = _status(capsys, "--json")
    assert code == 0
    timers = {a["target"]: a["timer"] for a in json.loads(out)["active"]}
    assert timers["web1"]["state"] == "cancelled" and timers["web2"]["state"] == "armed"
    assert "token" not in timers["web2"]  # the handle that cancels the timer is not shown
    _code, out = _status(capsys)
    assert "confirmed, cancelled" in _row(out, "web1") and "ARMED, reverts in" in _row(out, "web2")
    assert "cd" * 16 not in out


def test_the_daemons_reverification_is_journaled_as_proof(tmp_path: Path):
    """The daemon re-verifies every containment periodically: its read-backs (in effect, then drift) are what the
    next `status` shows, attributed to the daemon."""
    import httpx

    from agent.proof import last_checks
    from tests.unit.daemon_env import configure, running, wait_for
    from tests.unit.test_intake_decisions import actions, post

    cfg, world = configure(tmp_path, daemon="  reverify_interval: 1s\n  drift_policy: alert\n")
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url) as client:
        post(client, "web1")
        [row] = wait_for(lambda: [a for a in actions(daemon) if a.state == "done"])
        store = daemon.service.store

        def check(result: str) -> object:
            got = last_checks(store, [row.id]).get(row.id)
            return got if got is not None and got.cause == "daemon" and got.result == result else None

        wait_for(lambda: check("in_effect"))
        world.isolated["web1"] = False  # someone flushed the firewall
        drift = wait_for(lambda: check("drift"))
        assert "no longer in effect" in drift.summary


def test_the_console_shows_the_same_last_verification_as_status(env):
    """The web console's "contained now" read the apply-time verification only: after `status --verify` found
    drift it still said verified. It now shows the newest read-back, like `agent status`."""
    from agent.console.pages import contained_now
    from agent.containments import verify_all

    app, world, _tmp = env
    assert _contain(app, ["web1", "web2"]) == "done"
    world.isolated["web2"] = False
    verify_all(app)
    shown = {c.target: c for c in contained_now(app)}
    assert shown["web1"].verified_ok is True and shown["web2"].verified_ok is False
    assert shown["web2"].last_verified is not None


def test_ttl_within_a_day_shows_the_clock_time_without_a_date():
    """A 2 h TTL set at 22:30 ends tomorrow at 00:30: "in 2h00m, 00:30Z" (the table must fit 120 columns at any
    hour); a TTL more than a day away keeps its date."""
    from datetime import UTC, datetime

    now = datetime(2026, 12, 4, 22, 30, tzinfo=UTC)
    assert query._ttl(now + timedelta(hours=2), now) == "in 2h00m, 00:30Z"
    assert query._ttl(now + timedelta(days=2), now) == "in 2d0h, 2026-12-06 22:30Z"
