"""Build :class:`IncidentReportData` from audit records alone — the source counsel can verify independently.

Events read (written by the engine): ``incident.opened``, ``plan.created``, ``action.transition``,
``action.done``, ``action.failed``, ``action.undone``, ``approval.granted``/``approval.denied``,
``evidence.stored`` and optionally ``incident.contained``. Unknown events still appear in the timeline. Who and
what was affected (systems, accounts, IPs, data sets) is worked out in :mod:`agent.report.scope_of_actions`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from agent.report.model import ActionEntry, AuditSummary, IncidentReportData, TimelineEntry
from agent.report.scope_of_actions import fill_scope

__all__ = ["from_records", "parse_time"]

_SKIP = frozenset({"event", "ts", "seq", "prev_hash", "hash", "actor", "host", "pid", "incident", "event_ts",
                   "outbox_id"})


def parse_time(value: Any) -> dt.datetime | None:
    """Parse the audit log's ``...Z`` timestamps (and any ISO-8601 with offset); naive values are taken as UTC."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)  # Python 3.11 accepts the trailing Z
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def from_records(records: Iterable[Mapping[str, Any]], incident: str,
                 inventory_tags: Mapping[str, Mapping[str, Any]], *, timezone: str = "UTC",
                 flags: Iterable[str] = (), audit: AuditSummary | None = None,
                 organisation: str = "", organisation_facts: Mapping[str, Any] | None = None) -> IncidentReportData:
    """Fold the incident's audit records into report data (records of other incidents are ignored)."""
    data = IncidentReportData(incident_id=incident, title="", discovered_at=None, contained_at=None, trigger="",
                              reason="", requested_by="", timezone=timezone, flags=sorted(set(flags)), audit=audit,
                              organisation=organisation)
    actions: dict[str, ActionEntry] = {}
    arguments: dict[str, Mapping[str, Any]] = {}
    incident_approvals: list[tuple[str, str]] = []
    mine = [r for r in records if r.get("incident") == incident]
    for record in mine:
        # a site worker's record keeps the time it happened (event_ts) — chained later by the deployment's writer
        when = parse_time(record.get("event_ts")) or parse_time(record.get("ts")) or dt.datetime.now(dt.UTC)
        event = str(record.get("event", ""))
        actor = str(record.get("actor", ""))
        data.timeline.append(TimelineEntry(when, event, _summary(record), actor, record.get("seq")))
        if event == "incident.opened":
            data.opened_at = when
            data.title = str(record.get("title") or "")
            data.reason = str(record.get("reason") or "")
            data.requested_by = str(record.get("requested_by") or actor)
            data.trigger = str(record.get("trigger") or "")
            data.discovered_at = parse_time(record.get("discovered_at")) or when
            data.clock_facts["discovery"] = {
                "time": data.discovered_at, "confidence": "stated", "audit_seq": record.get("seq"),
                "source": f"recorded when the incident was opened by {data.requested_by} (audit seq "
                          f"{record.get('seq')})"}
            alert: Mapping[str, Any] = record["alert"] if isinstance(record.get("alert"), Mapping) else {}
            alert_time = parse_time(alert.get("event_time"))
            if alert_time is not None:
                data.clock_facts["alert_event"] = {"time": alert_time,
                                                   "confidence": "as sent by the alert source",
                                                   "source": f"alert {alert.get('id')} from {alert.get('source')}",
                                                   "audit_seq": record.get("seq")}
            data.flags = sorted(set(data.flags) | set(record.get("flags") or ()))
        elif event == "plan.created":
            for spec in record.get("actions") or ():
                entry = _entry(actions, spec, record)
                entry.triggered_by = entry.triggered_by or str(record.get("requested_by") or actor)
                # the reason of the plan that made this action (a release has its own), not the incident's first
                entry.why = entry.why or str(spec.get("why") or spec.get("reason") or record.get("reason")
                                             or data.reason)
                entry.step = entry.step or str(spec.get("step") or "")
                if spec.get("undo_of"):
                    entry.kind, entry.undo_of = "undo", str(spec["undo_of"])
                entry.change = entry.change or str(spec.get("summary") or spec.get("description") or "")
                arguments[entry.action_id] = spec.get("args") or {}
        elif event == "action.intent":
            entry = _entry(actions, record, record)
            entry.triggered_by = entry.triggered_by or str(record.get("requested_by") or actor)
            entry.why = entry.why or str(record.get("reason") or data.reason)
            entry.step = entry.step or str(record.get("step") or "")
            if record.get("kind") == "undo" or record.get("undo_of"):
                entry.kind, entry.undo_of = "undo", str(record.get("undo_of") or "")
            if isinstance(record.get("args"), Mapping):
                arguments.setdefault(entry.action_id, record["args"])
        elif event.startswith("action."):
            entry = _entry(actions, record, record)
            if isinstance(record.get("args"), Mapping) and entry.action_id not in arguments:
                arguments[entry.action_id] = record["args"]
            if event == "action.undone" and record.get("undo_of"):  # the engine: a release action finished
                entry.kind, entry.undo_of = "undo", str(record["undo_of"])
                _apply_action_event(entry, "action.done", record, when)
                _mark_released(actions, entry, when)
            else:
                _apply_action_event(entry, event, record, when)
        elif event in ("approval.granted", "approval.approved"):  # the CLI and the daemon's approvals
            approver = str(record.get("approver") or record.get("decided_by") or record.get("by") or actor)
            why = str(record.get("reason") or "")
            if record.get("action_id") in actions:
                actions[str(record["action_id"])].approved_by = approver
                actions[str(record["action_id"])].approval_reason = why
            else:
                incident_approvals.append((approver, why))
        elif event == "evidence.stored":
            data.evidence.append({key: record.get(key) for key in (
                "target", "file", "original_name", "sha256", "size", "collected_by", "collected_at", "source")})
        elif event == "incident.contained":
            data.contained_at = when
        elif event == "incident.facts":  # counsel-relevant facts recorded later (determination date, counts)
            _facts(data, record)
            for name, value in (record.get("events") or {}).items():
                parsed = parse_time(value)
                if parsed:
                    data.events[str(name)] = parsed
            if record.get("total_affected") is not None:
                data.total_affected = int(record["total_affected"])
                data.total_source = _fact_source(record)
    _organisation(data, mine, organisation_facts or {})
    _clock(data)
    for entry in actions.values():
        if not entry.approved_by and incident_approvals:
            entry.approved_by, entry.approval_reason = incident_approvals[-1]
    data.actions = list(actions.values())
    fill_scope(data, arguments, inventory_tags, mine)
    applied = [a for a in data.actions if a.kind != "undo"]
    done = [a.time for a in applied if a.status == "done" and a.time]
    data.containment_complete = bool(applied) and all(a.status in ("done", "undone") for a in applied)
    if data.contained_at is None and done and data.containment_complete:
        data.contained_at = max(done)
    return data


def _entry(actions: dict[str, ActionEntry], spec: Mapping[str, Any], record: Mapping[str, Any]) -> ActionEntry:
    action_id = str(spec.get("action_id") or spec.get("id") or f"{spec.get('target')}:{spec.get('action')}")
    entry = actions.get(action_id)
    if entry is None:
        entry = actions[action_id] = ActionEntry(action_id=action_id, target=str(spec.get("target") or ""),
                                                 connector=str(spec.get("connector") or ""),
                                                 action=str(spec.get("action") or ""))
    for name in ("target", "connector", "action"):
        if not getattr(entry, name) and spec.get(name):
            setattr(entry, name, str(spec[name]))
    return entry


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        for key in ("summary", "change", "message"):
            if value.get(key):
                return str(value[key])
        return ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, Mapping | list))
    return "" if value is None else str(value)


def _mark_released(actions: dict[str, ActionEntry], release: ActionEntry, when: dt.datetime) -> None:
    """Show a finished release on the card of the action it undid (lesson: "isolate still says not undone")."""
    original = actions.get(release.undo_of)
    if original is None:
        return
    original.undone_by = release.action_id
    original.undo_status = (f"released {when:%Y-%m-%d %H:%M} UTC by {release.triggered_by or 'unknown'}"
                            + (f" — {release.why}" if release.why else "")
                            + (f"; verified: {release.verification}" if release.verification else ""))
    original.history.append((when, f"released by {release.action_id}"))


def _apply_action_event(entry: ActionEntry, event: str, record: Mapping[str, Any], when: dt.datetime) -> None:
    entry.time = when
    result = record.get("result")
    if isinstance(result, Mapping) and result.get("summary") and event == "action.transition":
        changed = result.get("changed")
        entry.change = str(result["summary"]) + ("" if changed is None else
                                                 " (changed)" if changed else " (no change needed)")
    verification = record.get("verification")
    if isinstance(verification, Mapping) and verification.get("summary"):
        entry.verification = str(verification["summary"])
    if event == "action.transition":
        to_state = str(record.get("to_state") or "")
        entry.history.append((when, f"{record.get('from_state') or '—'} → {to_state}"))
        entry.status = to_state or entry.status
        detail = record.get("detail")
        if isinstance(detail, Mapping) and detail.get("verification") is not None:
            entry.verification = _text(detail["verification"])
        elif detail and to_state in ("verify", "verified") and not isinstance(result, Mapping):
            entry.verification = _text(detail)
        elif detail and to_state in ("applied", "apply", "applying") and not entry.change:
            entry.change = _text(detail)
    elif event == "action.done":
        entry.status = "done"
        entry.history.append((when, "done"))
        entry.change = _text(record.get("summary") or record.get("change")) or entry.change
        if record.get("verification") is not None and not isinstance(record["verification"], Mapping):
            entry.verification = _text(record["verification"])
    elif event == "action.failed":
        entry.status = "failed"
        entry.error = _text(record.get("error"))
        entry.history.append((when, "failed"))
    elif event == "action.undone":
        entry.status = "undone"
        entry.undo_status = f"undone {when:%Y-%m-%d %H:%M} UTC" + (
            f" by {record['actor']}" if record.get("actor") else "")
        if record.get("verification") is not None:
            entry.undo_status += f"; verified: {_text(record['verification'])}"
        entry.history.append((when, "undone"))


def _summary(record: Mapping[str, Any]) -> str:
    event = record.get("event")
    if event == "incident.opened":
        return f"Incident opened: {record.get('title') or ''} — reason: {record.get('reason') or 'not given'}"
    if event == "plan.created":
        specs = record.get("actions") or ()
        return f"Plan created with {len(specs)} action(s): " + "; ".join(
            f"{s.get('action')} on {s.get('target')}" for s in specs)
    if event == "action.transition":
        detail = _text(record.get("detail"))
        return (f"{record.get('action')} on {record.get('target')}: {record.get('from_state') or '—'} → "
                f"{record.get('to_state')}" + (f" ({detail})" if detail else ""))
    if event in ("action.done", "action.failed", "action.undone"):
        what = {"action.done": "completed", "action.failed": "FAILED", "action.undone": "undone"}[str(event)]
        extra = _text(record.get("error") if event == "action.failed" else record.get("summary"))
        return f"{record.get('action')} on {record.get('target')} {what}" + (f": {extra}" if extra else "")
    if event in ("approval.granted", "approval.denied"):
        verb = "approved" if event == "approval.granted" else "denied"
        return f"{verb} by {record.get('approver') or record.get('actor')}: {record.get('reason') or ''}".strip()
    if event == "evidence.stored":
        digest = str(record.get("sha256"))[:16]
        return f"Evidence stored from {record.get('target')}: {record.get('file')} (SHA-256 {digest}…)"
    if event == "evidence.failed":
        what = f"{record.get('target')}: {record.get('original_name')}"
        return f"Evidence capture FAILED on {what} — {record.get('error')}"
    if event == "action.intent":
        verb = f"release of {record.get('action')}" if record.get("kind") == "undo" else str(record.get("action"))
        step = f" (step {record.get('step')})" if record.get("step") else ""
        return f"intent: {verb} on {record.get('target')}{step} — {record.get('reason') or 'no reason given'}"
    if event == "incident.scope":
        rows = record.get("systems") or ()
        sets = sorted({str(r.get("dataset") or r.get("name")) for r in rows if r.get("data") or r.get("residents")})
        return (f"scope snapshot ({record.get('cause') or 'plan'}): {len(rows)} system(s); data set(s) "
                f"{', '.join(sets) or 'none'}")
    if event == "incident.facts":
        parts = [f"{k.replace('_', ' ')} {v}" for k, v in (record.get("events") or {}).items()]
        parts += [f"{k.replace('_', ' ')}: {record[k]}" for k in ("clock_start", "total_affected", "residents",
                                                                  "data_categories", "organisation", "pending")
                  if record.get(k) not in (None, [], {})]
        return f"facts recorded by {record.get('recorded_by')} (source: {record.get('source')}): " + "; ".join(parts)
    if event == "incident.updated":
        return "incident updated: " + ", ".join(f"{k} {v}" for k, v in record.items() if k not in _SKIP)
    if event == "incident.contained":
        return f"incident contained at {record.get('contained_at')}"
    if event == "audit.checkpoint":
        return f"signed checkpoint covering seq {record.get('covers_seq')}"
    if event == "audit.exported":
        return f"audit log exported ({record.get('file')}) by {record.get('exported_by')}"
    skip = _SKIP
    return "; ".join(f"{k}: {_text(v)}" for k, v in record.items() if k not in skip)[:300]


def _facts(data: IncidentReportData, record: Mapping[str, Any]) -> None:
    """Clock times, clock start, organisation overrides and pending decisions, each with its source."""
    source = _fact_source(record)
    confidence = str(record.get("confidence") or "stated")
    for name, value in (record.get("events") or {}).items():
        parsed = parse_time(value)
        if parsed:
            data.clock_facts[str(name)] = {"time": parsed, "source": source, "confidence": confidence,
                                           "audit_seq": record.get("seq")}
    if record.get("clock_start"):
        data.clock_start = str(record["clock_start"])
        data.clock_start_source = source
    for key, value in (record.get("organisation") or {}).items():
        data.org_facts[str(key)] = {"value": value, "source": source}
    for text in record.get("pending") or ():
        data.pending.append({"text": str(text), "source": source})


def _organisation(data: IncidentReportData, mine: list[Mapping[str, Any]], configured: Mapping[str, Any]) -> None:
    """Organisation facts: as snapshotted with the incident (else as configured now), then per-incident facts."""
    from agent.report.vocabulary import ORGANISATION_FACTS

    snapshot = next((r for r in mine if r.get("event") == "incident.scope" and r.get("organisation")), None)
    base = dict(snapshot["organisation"]) if snapshot else dict(configured)
    where = (f"agent.yaml organisation, as snapshotted with the incident (audit seq {snapshot.get('seq')})"
             if snapshot else "agent.yaml organisation (current configuration; no snapshot in the log)")
    for key, value in base.items():
        data.org_facts.setdefault(str(key), {"value": value, "source": where})
    if data.organisation and "name" not in data.org_facts:
        data.org_facts["name"] = {"value": data.organisation, "source": "given when the report was built"}
    if not data.organisation and data.org_facts.get("name"):
        data.organisation = str(data.org_facts["name"]["value"])
    flags = set(data.flags)
    for key, (flag, _label) in ORGANISATION_FACTS.items():
        fact = data.org_facts.get(key)
        if fact is not None:
            (flags.add if fact["value"] else flags.discard)(flag)
    data.flags = sorted(flags)


def _clock(data: IncidentReportData) -> None:
    """The clock start counsel chose (default: discovery) becomes the time the 'from discovery' deadlines use."""
    chosen = data.clock_facts.get(data.clock_start)
    if chosen is not None:
        data.discovered_at = chosen["time"]
    elif "discovery" in data.clock_facts:
        data.discovered_at = data.clock_facts["discovery"]["time"]
    for name, fact in data.clock_facts.items():
        if name not in ("discovery", "alert_event"):
            data.events[name] = fact["time"]


def _fact_source(record: Mapping[str, Any]) -> str:
    who = record.get("recorded_by") or record.get("actor") or "unknown"
    source = f" — {record['source']}" if record.get("source") else ""
    return f"recorded by {who} (audit seq {record.get('seq')}){source}"
