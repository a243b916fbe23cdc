"""Counsel report: what happened, what we changed, what it proves, and which notices may now be due.

Usage::

    data = from_records(records(audit_dir, "INC-1"), "INC-1", {}, timezone="America/New_York",
                        audit=AuditSummary.from_verify(verify(audit_dir, public_key=pub)))
    report = build_report(data)
    Path("report.html").write_text(report.to_html()); report.to_pdf(Path("report.pdf"))

Exports load lazily: ``agent incidents facts`` builds its options from :mod:`agent.report.facts` at start-up
and must not pay for the report renderer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.report.from_records import from_records, parse_time
    from agent.report.model import ActionEntry, AuditSummary, IncidentReportData, TimelineEntry
    from agent.report.render import Report, build_report
    from agent.report.scope import target_tags

_EXPORTS = {"from_records": "from_records", "parse_time": "from_records", "target_tags": "scope",
            "ActionEntry": "model", "AuditSummary": "model", "IncidentReportData": "model", "TimelineEntry": "model",
            "Report": "render", "build_report": "render"}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agent.report.{module}"), name)
    globals()[name] = value
    return value
