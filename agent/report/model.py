"""What the counsel report says, as plain data: the adapter from the store or from audit records fills it.

Why a separate model: the report must be buildable from the audit log alone (what counsel can verify) and also
from the engine's store (richer, same shape), so the template depends only on these dataclasses.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ActionEntry", "AuditSummary", "IncidentReportData", "TimelineEntry"]


@dataclass
class ActionEntry:
    """One containment action and everything counsel may ask about it."""

    action_id: str
    target: str
    connector: str
    action: str
    time: dt.datetime | None = None  # time of the last state change
    change: str = ""  # what changed on the target (secrets already redacted)
    triggered_by: str = ""
    approved_by: str = ""
    approval_reason: str = ""
    why: str = ""
    verification: str = ""
    status: str = "planned"  # planned | applying | done | failed | undone ...
    undo_status: str = "not undone"
    error: str = ""
    history: list[tuple[dt.datetime, str]] = field(default_factory=list)  # (time, "from → to")
    kind: str = "apply"  # "apply" | "undo" (a release / rollback of ``undo_of``)
    undo_of: str = ""
    step: str = ""
    undone_by: str = ""  # action id of the release that undid this one


@dataclass
class TimelineEntry:
    """One dated line of the timeline."""

    time: dt.datetime
    event: str
    summary: str
    actor: str = ""
    seq: int | None = None


@dataclass
class AuditSummary:
    """Audit-chain verification result as printed in the report."""

    ok: bool
    records: int
    checkpoints_verified: int
    key_fingerprint: str | None
    first_error: str | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    notes: list[str] = field(default_factory=list)
    last_checkpoint_seq: int | None = None
    last_checkpoint_hash: str | None = None
    anchor: str | None = None
    proven: list[str] = field(default_factory=list)
    not_proven: list[str] = field(default_factory=list)

    @classmethod
    def from_verify(cls, report: Any) -> AuditSummary:
        """Adapt an :class:`agent.audit.VerifyReport`."""
        return cls(ok=report.ok, records=report.records, checkpoints_verified=report.checkpoints_verified,
                   key_fingerprint=report.key_fingerprint,
                   first_error=str(report.first_error) if report.first_error else None,
                   last_seq=report.last_seq, last_hash=report.last_hash, notes=list(report.notes),
                   last_checkpoint_seq=getattr(report, "last_checkpoint_seq", None),
                   last_checkpoint_hash=getattr(report, "last_checkpoint_hash", None),
                   anchor=getattr(report, "anchor", None), proven=list(getattr(report, "proven", [])),
                   not_proven=list(getattr(report, "not_proven", [])))


@dataclass
class IncidentReportData:
    """Everything the counsel report shows for one incident."""

    incident_id: str
    title: str
    discovered_at: dt.datetime | None
    contained_at: dt.datetime | None
    trigger: str
    reason: str
    requested_by: str
    opened_at: dt.datetime | None = None
    actions: list[ActionEntry] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    ips: list[str] = field(default_factory=list)
    data_categories: list[str] = field(default_factory=list)
    resident_states: list[str] = field(default_factory=list)
    residents_by_state: dict[str, int] = field(default_factory=dict)
    total_affected: int | None = None
    flags: list[str] = field(default_factory=list)
    events: dict[str, dt.datetime] = field(default_factory=dict)  # determination, consumer_notice, ...
    evidence: list[dict[str, Any]] = field(default_factory=list)  # EvidenceItem.to_dict() rows
    audit: AuditSummary | None = None
    timezone: str = "UTC"
    organisation: str = ""
    containment_complete: bool = False
    total_source: str = ""  # where total_affected comes from
    count_sources: dict[str, str] = field(default_factory=dict)  # state -> where its count comes from
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  # data set -> {data, residents, audit_seq}
    systems: dict[str, dict[str, Any]] = field(default_factory=dict)  # system -> {kind, dataset, audit_seq}
    scope_note: str = ""
    # clock facts: event name -> {"time", "source", "confidence", "audit_seq"} (alert_event, discovery,
    # determination, consumer_notice, materiality_determination)
    clock_facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    clock_start: str = "discovery"  # which clock fact starts the "from discovery" deadlines
    clock_start_source: str = "default: the discovery time recorded when the incident was opened"
    org_facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> {"value", "source"}
    pending: list[dict[str, Any]] = field(default_factory=list)  # {"text", "source"}
