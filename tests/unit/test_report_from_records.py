"""from_records: folding engine audit events into report data, including failures, undo and partial containment."""

from __future__ import annotations

import datetime as dt
from typing import Any

from agent.report import build_report, from_records, target_tags


def _rec(seq: int, event: str, **fields: Any) -> dict[str, Any]:
    ts = (dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=seq)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    return {"seq": seq, "ts": ts, "event": event, "actor": fields.pop("actor", "svc-agent"), "incident": "INC-3",
            **fields}


PLAN = [{"action_id": "x1", "target": "web1", "connector": "ssh_linux", "action": "isolate"},
        {"action_id": "x2", "target": "mallory", "connector": "active_directory", "action": "disable_account",
         "args": {"account": "mallory"}},
        {"action_id": "x3", "target": "gw", "connector": "firewall", "action": "block_ip",
         "args": {"ip": ["198.51.100.7", "not-an-ip"]}}]


def _records() -> list[dict[str, Any]]:
    return [
        _rec(1, "incident.opened", title="Phishing", reason="user report", requested_by="dave",
             trigger="technician", discovered_at="2026-03-01T23:30:00-05:00"),
        _rec(2, "plan.created", actions=PLAN, requested_by="dave"),
        _rec(3, "approval.granted", approver="erin", reason="isolate only", action_id="x1", actor="erin"),
        _rec(4, "action.transition", action_id="x1", target="web1", connector="ssh_linux", action="isolate",
             from_state="apply", to_state="verify", detail={"verification": "probe: only mgmt reachable"}),
        _rec(5, "action.done", action_id="x1", target="web1", action="isolate", summary="isolated"),
        _rec(6, "action.failed", action_id="x2", target="mallory", action="disable_account",
             error="AuthError: bind rejected for svc-ad"),
        _rec(7, "action.undone", action_id="x1", target="web1", action="isolate", actor="dave",
             verification="ruleset restored"),
        _rec(8, "scheduler.reverify", note="drift check ok"),
        {**_rec(9, "action.done", action_id="zz", target="other"), "incident": "INC-4"},
    ]


class TestFromRecords:
    def test_failures_undo_and_partial_containment(self) -> None:
        """A failed action leaves containment incomplete; undo is reported with who and the verification."""
        data = from_records(_records(), "INC-3", {"mallory": {"kind": "account"}})
        by_id = {a.action_id: a for a in data.actions}
        assert by_id["x1"].status == "undone" and "by dave" in by_id["x1"].undo_status
        assert "verified: ruleset restored" in by_id["x1"].undo_status
        assert by_id["x1"].verification == "probe: only mgmt reachable"
        assert by_id["x2"].status == "failed" and "bind rejected" in by_id["x2"].error
        assert by_id["x3"].status == "planned"
        assert not data.containment_complete and data.contained_at is None
        assert [a.approved_by for a in data.actions] == ["erin", "", ""]

    def test_discovery_time_with_offset(self) -> None:
        """A discovery time given with an offset is kept as that instant (04:30 UTC the next day)."""
        data = from_records(_records(), "INC-3", {})
        assert data.discovered_at == dt.datetime(2026, 3, 2, 4, 30, tzinfo=dt.UTC)

    def test_scope_from_args_and_kinds(self) -> None:
        """Accounts and IPs come from plan arguments and inventory kinds; invalid IP strings are ignored."""
        data = from_records(_records(), "INC-3", {"mallory": {"kind": "account"}})
        assert data.accounts == ["mallory"] and data.ips == ["198.51.100.7"] and data.hosts == ["gw", "web1"]

    def test_unknown_events_kept_in_timeline_other_incidents_dropped(self) -> None:
        """Events the adapter does not know still appear in the timeline; other incidents never do."""
        data = from_records(_records(), "INC-3", {})
        events = [e.event for e in data.timeline]
        assert "scheduler.reverify" in events and len(events) == 8
        assert any("drift check ok" in e.summary for e in data.timeline)

    def test_partial_report_says_not_complete(self) -> None:
        """The rendered summary says containment is not complete and lists the failure."""
        html = build_report(from_records(_records(), "INC-3", {})).to_html()
        assert "Containment is not complete" in html and "AuthError: bind rejected for svc-ad" in html


class TestTargetTags:
    def test_flat_and_structured_tags(self) -> None:
        """Flat `data:`/`residents:` tags and structured keys normalise to the same shape."""
        flat = target_tags({"h": {"tags": ["data:ssn", "residents:MA=12", "residents:NY", "role:web"]}}, "h")
        structured = target_tags({"h": {"data": ["ssn"], "residents": {"MA": 12, "NY": None}}}, "h")
        assert flat["data"] == structured["data"] == {"ssn"}
        assert flat["residents"] == structured["residents"] == {"MA": 12, "NY": None}
        assert target_tags({}, "missing") == {"kind": None, "data": set(), "residents": {}, "address": None}
