"""Which audit records become notices, and what a notice says.

A notice is built from the audit record that was just written (already redacted by the audit pipeline), so what
people are told is exactly what the log — and later counsel — says. Records that need nobody (transitions that
are not failures, intake bookkeeping) map to None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Notice", "notice_for"]


@dataclass(frozen=True)
class Notice:
    """One thing to tell people: a kind from :data:`agent.notify.config.EVENTS`, a title and facts."""

    event: str
    title: str
    summary: str
    facts: tuple[tuple[str, str], ...] = ()
    link: str = ""  # the console page for it (approval page for approvals); empty when none is configured
    severity: str = "info"  # info | warning | critical (colour in chat, subject prefix in mail)
    key: str = ""  # what it is about (audit seq), so a retried delivery is recognisably the same notice
    detail: list[str] = field(default_factory=list)  # e.g. the exact plan of an approval

    def as_dict(self) -> dict[str, Any]:
        return {"event": self.event, "title": self.title, "summary": self.summary, "facts": list(self.facts),
                "link": self.link, "severity": self.severity, "key": self.key, "detail": self.detail}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Notice:
        return Notice(event=data["event"], title=data["title"], summary=data["summary"],
                      facts=tuple((str(k), str(v)) for k, v in data.get("facts", [])), link=data.get("link", ""),
                      severity=data.get("severity", "info"), key=data.get("key", ""),
                      detail=list(data.get("detail", [])))


def notice_for(record: dict[str, Any], console_url: str = "") -> Notice | None:
    """The notice for one audit record, or None when the record needs nobody."""
    event = str(record.get("event", ""))
    key = f"audit:{record.get('seq', '')}"
    incident = str(record.get("incident", "") or "")
    target = str(record.get("target", "") or "")
    action = str(record.get("action", "") or "")
    if event == "approval.requested":
        approval = str(record.get("approval_id") or record.get("id") or "")
        plan = record.get("plan")
        detail = [str(line) for line in plan] if isinstance(plan, list) else []
        facts = [("Incident", incident), ("Runbook", str(record.get("runbook", ""))), ("Target", target),
                 ("Why approval", str(record.get("why", "") or record.get("reason", ""))),
                 ("Expires", str(record.get("expires_at", "") or ""))]
        link = f"{console_url}/approvals/{approval}" if console_url and approval else ""
        return Notice("approval_pending", f"Approval needed: {record.get('runbook', '')} on {target}",
                      "A containment plan is waiting for an approver. Decide in the console (or "
                      f"`agent approve {approval}` / `agent deny {approval}`).", _facts(facts), link, "warning",
                      key, detail)
    if event == "action.done" and record.get("undo_of") is None:
        return Notice("action_done", f"{action} done on {target}", "Applied and verified on the target.",
                      _facts([("Incident", incident), ("Target", target), ("Action", action)]),
                      _incident_link(console_url, incident), "info", key)
    if event == "action.failed":
        return Notice("action_failed", f"{action} FAILED on {target}",
                      str(record.get("error", "") or "the action failed"),
                      _facts([("Incident", incident), ("Target", target), ("Action", action),
                              ("Error kind", str(record.get("error_kind", "") or ""))]),
                      _incident_link(console_url, incident), "critical", key)
    if event == "action.transition" and record.get("to_state") == "in_doubt":
        return Notice("action_in_doubt", f"{action} IN DOUBT on {target}",
                      "The change may or may not have reached the target; the agent re-verifies it. "
                      + str(record.get("detail", "") or ""),
                      _facts([("Incident", incident), ("Target", target), ("Action", action)]),
                      _incident_link(console_url, incident), "critical", key)
    if event in ("containment.drift", "containment.unverified"):
        return Notice("drift", f"Containment drift on {target}",
                      str(record.get("detail", "") or record.get("reason", "") or
                          "re-verification found the containment no longer in force"),
                      _facts([("Incident", incident), ("Target", target), ("Action", action),
                              ("Policy", str(record.get("policy", "") or ""))]),
                      _incident_link(console_url, incident), "critical", key)
    if event == "action.undone" and record.get("runbook") in ("ttl-release", "ttl-sweep"):
        return Notice("ttl_release", f"TTL release done on {target}", "The containment expired and was undone.",
                      _facts([("Incident", incident), ("Target", target), ("Action", action)]),
                      _incident_link(console_url, incident), "info", key)
    if event == "ttl.release_due":
        return Notice("ttl_release", f"TTL release coming on {target}",
                      f"The containment ({action}) will be undone automatically at {record.get('expires_at', '?')} "
                      "UTC (the TTL given when it was applied). Releasing it earlier is `agent release`.",
                      _facts([("Incident", incident), ("Target", target), ("Action", action),
                              ("Releases at (UTC)", str(record.get("expires_at", "")))]),
                      _incident_link(console_url, incident), "warning", key)
    if event == "ttl.release_failed":
        return Notice("ttl_release", f"TTL release FAILED on {target}",
                      str(record.get("error", "") or "the automatic release failed; the host stays contained"),
                      _facts([("Incident", incident), ("Target", target)]),
                      _incident_link(console_url, incident), "critical", key)
    return None


def _facts(pairs: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in pairs if v)


def _incident_link(console_url: str, incident: str) -> str:
    return f"{console_url}/incidents/{incident}" if console_url and incident else ""
