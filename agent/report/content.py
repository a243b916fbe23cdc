"""What the counsel report says, as one JSON-ready structure: the PDF/HTML renders it, ``--format json`` prints it.

Why one structure: a test (or counsel's own tooling) must be able to check counts, deadlines and statements without
parsing HTML, and the PDF must not say anything the JSON does not. The narrative sentences are built here too.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.report.vocabulary import DATA_CATEGORIES, ORGANISATION_FACTS

if TYPE_CHECKING:
    from agent.obligations import ChecklistItem
    from agent.report.render import Report

__all__ = ["CLOCK_LABELS", "PRIVILEGE", "report_content"]

FORMAT = "containment-agent/counsel-report/v1"
PRIVILEGE = "Privileged & Confidential — prepared at the direction of counsel"
DISCLAIMER = "For counsel's review — not legal advice."
CLOCK_LABELS = {
    "alert_event": "Alerted event happened", "discovery": "Discovery", "determination": "Determination that a "
    "breach occurred", "consumer_notice": "Notices sent to individuals", "materiality_determination":
    "Materiality determination (SEC)",
}


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def report_content(report: Report) -> dict[str, Any]:
    d, checklist = report.data, report.checklist
    zone = ZoneInfo(d.timezone)

    def local(moment: dt.datetime | None) -> str | None:
        return None if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")

    notifications = [_item(i, local) for i in checklist.items] if checklist else []
    actions = [_action(a) for a in d.actions]
    content: dict[str, Any] = {
        "format": FORMAT,
        "incident": d.incident_id,
        "title": d.title,
        "organisation": d.organisation or None,
        "marking": PRIVILEGE,
        "disclaimer": checklist.disclaimer if checklist else DISCLAIMER,
        "generated_at": _iso(report.generated_at),
        "timezone": d.timezone,
        "clock": {
            "start": d.clock_start, "start_source": d.clock_start_source,
            "used_for_discovery_deadlines": _iso(d.discovered_at),
            "facts": [{"name": name, "label": CLOCK_LABELS.get(name, name), "time_utc": _iso(f["time"]),
                       "time_local": local(f["time"]), "source": f["source"], "confidence": f["confidence"],
                       "audit_seq": f.get("audit_seq")}
                      for name, f in sorted(d.clock_facts.items(), key=lambda kv: kv[1]["time"])],
        },
        "contained_at": _iso(d.contained_at),
        "containment_complete": d.containment_complete,
        "organisation_facts": [
            {"key": key, "label": label, "rule_flag": flag, "value": d.org_facts[key]["value"],
             "source": d.org_facts[key]["source"]}
            for key, (flag, label) in ORGANISATION_FACTS.items() if key in d.org_facts],
        "scope": {
            "hosts": d.hosts, "accounts": d.accounts, "ips": d.ips,
            "data_categories": [{"category": c, "label": DATA_CATEGORIES.get(c, c)} for c in d.data_categories],
            "systems": d.systems, "datasets": d.datasets,
            "residents_by_state": dict(sorted(d.residents_by_state.items())),
            "states_without_count": [s for s in d.resident_states if s not in d.residents_by_state],
            "count_sources": d.count_sources, "total_affected": d.total_affected, "total_source": d.total_source,
            "counting": "people are counted once per data set (systems holding copies of the same records share "
                        "one); counts of different data sets are added, so a person in two data sets is counted "
                        "twice — an upper bound",
            "note": d.scope_note or None,
        },
        "notifications": notifications,
        "not_considered": [{"rule": t, "reason": r} for t, r in (checklist.not_considered if checklist else [])],
        "convention": checklist.convention if checklist else None,
        "rules_as_of": checklist.as_of if checklist else None,
        "actions": actions,
        "audit": _audit(d.audit),
        "evidence": [_evidence(e) for e in d.evidence],
        "timeline": [{"seq": e.seq, "time_utc": _iso(e.time), "time_local": local(e.time), "event": e.event,
                      "actor": e.actor, "summary": e.summary} for e in d.timeline],
    }
    content["unknown_facts"] = _unknown(report, content)
    content["pending_decisions"] = _pending(report)
    content["narrative"] = _narrative(report, content, local)
    return content


def _item(item: ChecklistItem, local: Any) -> dict[str, Any]:
    return {"regime": item.regime_id, "rule": item.title, "jurisdiction": item.jurisdiction,
            "citation": item.citation, "kind": item.kind, "party": item.party, "status": item.status,
            "conditions": item.conditions, "deadline": item.deadline.isoformat() if item.deadline else None,
            "deadline_local": local(item.deadline), "deadline_text": item.deadline_text, "standard": item.standard,
            "clock": item.clock, "starts": item.starts, "note": item.note, "confidence": item.confidence,
            "sources": item.sources}


def _action(a: Any) -> dict[str, Any]:
    return {"id": a.action_id, "kind": a.kind, "undo_of": a.undo_of or None, "step": a.step, "target": a.target,
            "connector": a.connector, "action": a.action, "status": a.status, "why": a.why, "change": a.change,
            "verification": a.verification, "triggered_by": a.triggered_by, "approved_by": a.approved_by or None,
            "approval_reason": a.approval_reason or None, "undo_status": a.undo_status,
            "released_by": a.undone_by or None, "error": a.error or None, "time_utc": _iso(a.time),
            "history": [{"time_utc": _iso(t), "change": c} for t, c in a.history]}


def _audit(audit: Any) -> dict[str, Any] | None:
    if audit is None:
        return None
    return {"ok": audit.ok, "records": audit.records, "checkpoints_verified": audit.checkpoints_verified,
            "key_fingerprint": audit.key_fingerprint, "first_error": audit.first_error, "head_seq": audit.last_seq,
            "head_hash": audit.last_hash, "last_signed_seq": audit.last_checkpoint_seq, "anchor": audit.anchor,
            "anchor_to_keep": (f"{audit.last_checkpoint_seq}:{audit.last_checkpoint_hash}"
                               if audit.ok and audit.last_checkpoint_hash else None),
            "proven": audit.proven, "not_proven": audit.not_proven, "notes": audit.notes}


def _evidence(e: dict[str, Any]) -> dict[str, Any]:
    return {"target": e.get("target"), "file": e.get("file"), "name": e.get("original_name"),
            "sha256": e.get("sha256"), "size": e.get("size"), "status": e.get("status") or "captured",
            "error": e.get("error"), "collected_at": e.get("collected_at"), "collected_by": e.get("collected_by"),
            "source": e.get("source"), "collector_host": e.get("collector_host"), "audit_seq": e.get("seq")}


def _unknown(report: Report, content: dict[str, Any]) -> list[str]:
    """Facts the checklist needs that nobody has recorded yet (each says what it blocks)."""
    d, checklist = report.data, report.checklist
    out: list[str] = []
    waiting: dict[str, list[str]] = {}
    for item in checklist.items if checklist else []:
        if item.deadline is None and item.clock not in ("asap", "") and "not yet known" in item.deadline_text:
            waiting.setdefault(item.starts, []).append(f"{item.party} ({item.jurisdiction})")
    labels = {"determination": "the date it was determined that a breach occurred",
              "consumer_notice": "the date notices were sent to individuals",
              "materiality_determination": "the SEC materiality determination date"}
    for event, parties in waiting.items():
        what = labels.get(event, event)
        out.append(f"{what} — needed for: {'; '.join(parties[:4])}{' …' if len(parties) > 4 else ''}")
    if "alert_event" not in d.clock_facts:
        out.append("when the alerted event itself happened (only the discovery time is recorded)")
    for state in content["scope"]["states_without_count"]:
        out.append(f"how many {state} residents are affected (thresholds for {state} cannot be decided)")
    if d.total_affected is None:
        out.append("the total number of people affected")
    for key, (_flag, label) in ORGANISATION_FACTS.items():
        if key not in d.org_facts:
            out.append(f"whether the organisation is a {label} (not stated in agent.yaml or incident facts)")
    if not d.organisation:
        out.append("the organisation's name (organisation.name in agent.yaml)")
    return out


def _pending(report: Report) -> list[dict[str, str]]:
    """Decisions for counsel: recorded ones, then every checklist item that depends on an open condition."""
    out = [{"text": p["text"], "source": p["source"]} for p in report.data.pending]
    for item in report.checklist.items if report.checklist else []:
        if item.status == "conditional":
            out.append({"text": f"{item.party} ({item.jurisdiction}): {'; '.join(item.conditions)}",
                        "source": "notification checklist"})
    return out


def _narrative(report: Report, content: dict[str, Any], local: Any) -> dict[str, Any]:
    """The first page in sentences: what happened, what was done and when, what is verified, what is due next."""
    d = report.data
    scope = content["scope"]
    people = (f"{d.total_affected:,} people" if d.total_affected is not None else "an unknown number of people")
    states = ", ".join(f"{s} {n:,}" for s, n in scope["residents_by_state"].items())
    cats = "; ".join(x["label"] for x in scope["data_categories"]) or "no recorded personal data"
    happened = (f"{d.title or 'An incident'} was discovered {local(d.discovered_at) or 'at an unrecorded time'}"
                f"{' (' + d.reason + ')' if d.reason else ''}. The systems involved hold {cats} of {people}"
                f"{' (' + states + ')' if states else ''}, according to "
                + ("the inventory as it is now (no snapshot was recorded with the incident)." if d.scope_note
                   else "the inventory as recorded with the incident."))
    applied = [a for a in d.actions if a.kind != "undo"]
    released = [a for a in applied if a.undone_by]
    verbs = sorted({a.action.replace("_", " ") for a in applied})
    targets = sorted({a.target for a in applied})
    done_text = (f"{len(applied)} containment action(s) ({', '.join(verbs)}) on {', '.join(targets)}; "
                 f"{sum(a.status == 'done' for a in applied)} done, {sum(a.status == 'failed' for a in applied)} "
                 f"failed." if applied else "No containment actions were recorded.")
    if released:
        done_text += f" {len(released)} were later released."
    when = (f"Containment completed {local(d.contained_at)}" if d.contained_at else
            "Containment is not complete") + (
        f", {_elapsed(d.contained_at - d.discovered_at)} after discovery." if d.contained_at and d.discovered_at
        else ".")
    audit = content["audit"]
    if audit is None:
        verified = "The audit log was not verified for this report."
    elif not audit["ok"]:
        verified = f"AUDIT LOG VERIFICATION FAILED: {audit['first_error']}. Nothing here can be relied on."
    else:
        verified = (f"The audit log these facts come from verified: {audit['records']} records, signed up to seq "
                    f"{audit['last_signed_seq']} by {audit['key_fingerprint']}."
                    if audit["key_fingerprint"] else
                    f"The audit log's hash chain verified ({audit['records']} records) but no public key was given: "
                    "signatures were not checked.")
        if audit["anchor"]:
            verified += " It matches the trust anchor counsel received earlier (expected key and signed head)."
        else:
            verified += " It was not compared with a trust anchor held by counsel (see the integrity appendix)."
    due = [n for n in content["notifications"] if n["status"] == "applies" and n["kind"] == "notice"]
    now_items = [n for n in due if n["deadline"] is None and n["clock"] == "asap" and n["starts"] == "discovery"]
    dated = sorted((n for n in due if n["deadline"]), key=lambda n: n["deadline"])
    due_next = [{"party": n["party"], "jurisdiction": n["jurisdiction"], "due": None, "due_local": None,
                 "text": n["deadline_text"]} for n in now_items[:5]]  # "as soon as practicable" = already due
    due_next += [{"party": n["party"], "jurisdiction": n["jurisdiction"], "due": n["deadline"],
                  "due_local": n["deadline_local"], "text": n["deadline_text"]} for n in dated[:5]]
    return {"what_happened": happened, "what_was_done": done_text, "when": when, "verified": verified,
            "due_next": due_next}


def _elapsed(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 0:
        return "before discovery"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    return " ".join([f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours or days) + [f"{mins} min"])
