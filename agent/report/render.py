"""Render the counsel report to HTML (Jinja2) and PDF (WeasyPrint).

Why HTML first: the same document is readable in a browser, diffable in tests and printable to PDF; WeasyPrint
is a maintained pure-Python renderer with paged-media CSS (page numbers, running footers) that needs only
Pango and fonts from the OS, installed by scripts/install-system.sh. Both imports are lazy.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.obligations import Checklist, IncidentFacts, Rules, compute_checklist
from agent.report.content import report_content
from agent.report.model import IncidentReportData
from agent.report.vocabulary import DATA_CATEGORIES

__all__ = ["Report", "build_report"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
_CATEGORY_LABELS = DATA_CATEGORIES


class Report:
    """A built report: the data, the computed checklist, and renderers."""

    def __init__(self, data: IncidentReportData, checklist: Checklist | None, generated_at: dt.datetime) -> None:
        self.data = data
        self.checklist = checklist
        self.generated_at = generated_at

    def content(self) -> dict[str, Any]:
        """Everything the report states, as JSON-ready data (``agent report --format json``; the PDF shows it)."""
        return report_content(self)

    def to_json(self) -> str:
        import json

        return json.dumps(self.content(), indent=2, ensure_ascii=False) + "\n"

    def context(self) -> dict[str, Any]:
        """Template variables (also handy for tests and other renderers)."""
        zone = ZoneInfo(self.data.timezone)
        actions = self.data.actions
        counts = {state: sum(1 for a in actions if a.status == state) for state in ("done", "failed", "undone")}
        elapsed = None
        if self.data.discovered_at and self.data.contained_at:
            elapsed = _duration(self.data.contained_at - self.data.discovered_at)
        return {
            "d": self.data, "checklist": self.checklist, "generated_at": self.generated_at, "zone": zone,
            "utc": _fmt_utc, "local": lambda t: _fmt_local(t, zone), "elapsed": elapsed, "counts": counts,
            "category_label": lambda c: _CATEGORY_LABELS.get(c, c),
            "jurisdictions": _group(self.checklist) if self.checklist else [],
            "c": self.content(),
        }

    def to_html(self) -> str:
        """The complete report as one self-contained HTML document (CSS inlined)."""
        import jinja2

        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                 autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                                 lstrip_blocks=True, undefined=jinja2.StrictUndefined)
        css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
        return env.get_template("report.html.j2").render(css=css, **self.context())

    def to_pdf(self, path: Path) -> Path:
        """Render the HTML to a PDF file at ``path`` and return it."""
        from agent.extras import require

        require("weasyprint", "agent report --format pdf")
        import weasyprint

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        weasyprint.HTML(string=self.to_html(), base_url=str(TEMPLATES)).write_pdf(str(path))
        return path


def build_report(incident_data: IncidentReportData, *, rules: Rules | None = None,
                 generated_at: dt.datetime | None = None) -> Report:
    """Compute the notification checklist for the incident and return a renderable :class:`Report`."""
    discovered = incident_data.discovered_at or incident_data.opened_at
    checklist = None
    if discovered is not None:
        facts = IncidentFacts(
            discovered_at=discovered, data_categories=frozenset(incident_data.data_categories),
            resident_states=frozenset(incident_data.resident_states),
            residents_by_state=dict(incident_data.residents_by_state), total_affected=incident_data.total_affected,
            flags=frozenset(incident_data.flags), events=dict(incident_data.events), timezone=incident_data.timezone)
        checklist = compute_checklist(facts, rules)
    return Report(incident_data, checklist, generated_at or dt.datetime.now(dt.UTC))


def _fmt_utc(moment: dt.datetime | None) -> str:
    return "—" if moment is None else moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_local(moment: dt.datetime | None, zone: ZoneInfo) -> str:
    return "—" if moment is None else moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _duration(delta: dt.timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    if minutes < 0:
        return "before discovery"
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours or days) + [f"{mins} min"]
    return " ".join(parts)


def _group(checklist: Checklist) -> list[tuple[str, list[Any]]]:
    groups: dict[str, list[Any]] = {}
    for item in checklist.items:
        groups.setdefault(item.jurisdiction, []).append(item)
    return list(groups.items())
