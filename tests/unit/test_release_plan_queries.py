"""A release of many hosts reads the journal's active items once, not once per host (issue 19, fan-out: each
read cost 1.3-1.5 ms of CPU in the release's planning), and plans exactly what the per-host reads planned: the
host released once, the one never contained reported as having nothing to undo, a second release empty."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event

from agent.runbook import find_runbook
from tests.unit.engine_env import make_env


def _run(app: Any, book: str, hosts: list[str], incident: str, **params: Any) -> Any:
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), hosts, params)
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="test", requested_by=app.actor, trigger="cli")
    return engine.execute(plan, incident), plan


def test_release_of_many_hosts_reads_active_items_once(tmp_path: Path) -> None:
    app, world = make_env(tmp_path)
    try:
        _run(app, "isolate-host", ["web1", "web2"], "INC-1", capture_evidence=False)
        reads: list[str] = []

        def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT") and "FROM action_items JOIN actions" in statement:
                reads.append(statement)
        event.listen(app.store.engine, "before_cursor_execute", count)
        plan = app.planner().build(find_runbook(app.settings.runbooks, "release-host"), ["web1", "web2", "web3"],
                                   {})
        event.remove(app.store.engine, "before_cursor_execute", count)
        assert len(reads) == 1, reads
        assert sorted(pa.target.name or "" for pa in plan.actions) == ["web1", "web2"]
        assert [n for n in plan.notes if "nothing to undo" in n] == [
            "web3: no active isolate in the journal — nothing to undo"]
        result, _ = _run(app, "release-host", ["web1", "web2", "web3"], "INC-2")
        assert result.status == "done" and not world.isolated["web1"] and not world.isolated["web2"]
        again = app.planner().build(find_runbook(app.settings.runbooks, "release-host"), ["web1", "web2"], {})
        assert again.actions == []
    finally:
        app.close()
