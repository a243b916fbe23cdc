"""Counsel report: what happened, what we changed, what it proves, and which notices may now be due.

Usage::

    data = from_records(records(audit_dir, "INC-1"), "INC-1", inventory_tags, timezone="America/New_York",
                        audit=AuditSummary.from_verify(verify(audit_dir, public_key=pub)))
    report = build_report(data)
    Path("report.html").write_text(report.to_html()); report.to_pdf(Path("report.pdf"))
"""

from __future__ import annotations

from agent.report.from_records import from_records, parse_time, target_tags
from agent.report.model import ActionEntry, AuditSummary, IncidentReportData, TimelineEntry
from agent.report.render import Report, build_report

__all__ = [
    "ActionEntry",
    "AuditSummary",
    "IncidentReportData",
    "Report",
    "TimelineEntry",
    "build_report",
    "from_records",
    "parse_time",
    "target_tags",
]
