"""Breach-notification checklist: which rules of the obligations table (shipped in the package) apply, and by when.

Why the rules are data: laws change (California and New York moved to 30 days in 2025-2026) and counsel must be
able to read and correct them without reading Python. This module only evaluates the table against the facts
of one incident and computes dates; it never decides that a duty does *not* exist where facts are missing — it
says what the duty depends on. Every output is "for counsel's review — not legal advice".

Counting conventions (also printed in the report, see ``CONVENTION``): trigger day excluded, deadline = end of
(trigger date + N calendar days) in the incident's time zone, no weekend/holiday roll-forward; business days
skip weekends and U.S. federal holidays; hours run from the exact trigger time; ``asap`` standards never become
dates; clocks that start at an event other than discovery are computed only when that event's time is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from agent.paths import shipped_obligations
from agent.report.vocabulary import DATA_CATEGORIES, ORGANISATION_FACTS, UnknownCategory, check_categories

__all__ = [
    "CONVENTION",
    "DATA_CATEGORIES",
    "DEFAULT_RULES",
    "ORGANISATION_FACTS",
    "Checklist",
    "ChecklistItem",
    "IncidentFacts",
    "Rules",
    "UnknownCategory",
    "add_business_days",
    "check_categories",
    "compute_checklist",
    "load_rules",
    "us_federal_holidays",
]

DEFAULT_RULES = shipped_obligations()  # package data (importlib.resources), not a checkout's config/ folder
CONVENTION = (
    "Deadlines count calendar days from the day after the trigger (trigger day excluded) and end at 23:59 on the "
    "last day in the incident's time zone, with no roll-forward for weekends or holidays; business-day deadlines "
    "(SEC, Vermont) skip Saturdays, Sundays and U.S. federal holidays; hour deadlines (GDPR, NY DFS) run from the "
    "exact trigger time. 'As soon as practicable' standards have no calendar date and none is invented. Counting "
    "the trigger day as day 1 would make each day-based deadline one day earlier."
)
EVENT_LABELS = {
    "discovery": "discovery of the breach",
    "determination": "the determination that a breach occurred",
    "materiality_determination": "the determination that the incident is material",
    "consumer_notice": "the date notices are sent to residents",
    "regulator_identification": "OCABR identifying the agencies to notify",
    "calendar_year_end": "the end of the calendar year of discovery",
}
_UNITS = {"days": "calendar days", "business_days": "business days", "hours": "hours"}



@dataclass(frozen=True)
class IncidentFacts:
    """What the checklist depends on. Unknown facts stay empty and make items conditional, never omitted."""

    discovered_at: dt.datetime
    data_categories: frozenset[str] = frozenset()
    resident_states: frozenset[str] = frozenset()
    residents_by_state: Mapping[str, int] = field(default_factory=dict)
    total_affected: int | None = None
    flags: frozenset[str] = frozenset()
    events: Mapping[str, dt.datetime] = field(default_factory=dict)
    timezone: str = "UTC"


@dataclass
class ChecklistItem:
    """One notice or action for counsel to consider."""

    regime_id: str
    title: str
    jurisdiction: str
    citation: str
    kind: str  # "notice" | "action"
    party: str
    standard: str
    status: str  # "applies" | "conditional" | "threshold not met"
    conditions: list[str]
    deadline: dt.datetime | None
    deadline_text: str
    note: str = ""
    sources: list[str] = field(default_factory=list)
    confidence: str = ""
    clock: str = ""
    starts: str = ""


@dataclass
class Checklist:
    """The computed checklist plus what it was computed from."""

    as_of: str
    disclaimer: str
    convention: str
    discovered_at: dt.datetime
    timezone: str
    items: list[ChecklistItem]
    not_considered: list[tuple[str, str]]  # (regime title, reason)

    def dated(self) -> list[ChecklistItem]:
        """Items with a computed deadline, earliest first (the report's "key dates")."""
        return sorted((i for i in self.items if i.deadline is not None), key=lambda i: i.deadline)  # type: ignore[arg-type,return-value]

    def without_date(self) -> list[ChecklistItem]:
        """Notices that apply now under an 'as soon as practicable' standard (no calendar date exists)."""
        return [i for i in self.items
                if i.kind == "notice" and i.clock == "asap" and i.status == "applies" and i.starts == "discovery"]


@dataclass(frozen=True)
class Rules:
    """The parsed rules table."""

    as_of: str
    disclaimer: str
    regimes: tuple[Mapping[str, Any], ...]


def load_rules(path: Path | None = None) -> Rules:
    """Read the YAML table (default: the shipped one); re-read only when the file changes."""
    target = (path or DEFAULT_RULES).resolve()
    return _load_rules(target, target.stat().st_mtime_ns)


@cache
def _load_rules(path: Path, mtime_ns: int) -> Rules:
    from agent.yamlsrc import load_yaml

    doc = load_yaml(path)
    root = doc.root()
    for regime in root.child("regimes").elements():
        parts = [regime, *regime.child("notices").elements(), *regime.child("actions").elements()]
        for part in parts:
            for element in part.child("data_any").elements():
                try:
                    check_categories([element.value], where=str(regime.value.get("id")))
                except UnknownCategory as exc:  # name file and line, like every other configuration error
                    raise UnknownCategory(str(element.error(str(exc)))) from None
    data = doc.data
    return Rules(as_of=str(data["as_of"]), disclaimer=str(data.get("disclaimer", "")),
                 regimes=tuple(data["regimes"]))


def compute_checklist(facts: IncidentFacts, rules: Rules | None = None) -> Checklist:
    """Evaluate every regime against ``facts``; see the module docstring for the conventions."""
    rules = rules or load_rules()
    if facts.discovered_at.tzinfo is None:
        raise ValueError("discovered_at must be timezone-aware")
    zone = ZoneInfo(facts.timezone)
    items: list[ChecklistItem] = []
    skipped: list[tuple[str, str]] = []
    for regime in rules.regimes:
        reason = _regime_excluded(regime, facts)
        if reason:
            skipped.append((str(regime["title"]), reason))
            continue
        base_conditions = _data_conditions(regime.get("data_any"), facts)
        for notice in regime.get("notices") or ():
            if notice.get("clock") == "none":
                continue
            items.append(_notice_item(regime, notice, facts, zone, base_conditions))
        for action in regime.get("actions") or ():
            conditions = base_conditions + _data_conditions(action.get("data_any"), facts)
            months = f" for at least {action['months']} months" if action.get("months") else ""
            items.append(ChecklistItem(
                regime_id=str(regime["id"]), title=str(regime["title"]), jurisdiction=str(regime["jurisdiction"]),
                citation=str(regime["citation"]), kind="action", party="(organisation)",
                standard=str(action["do"]) + months, status="conditional" if conditions else "applies",
                conditions=conditions, deadline=None, deadline_text=str(action.get("when", "no fixed deadline")),
                sources=list(regime.get("sources") or ()), confidence=str(regime.get("confidence", ""))))
    return Checklist(as_of=rules.as_of, disclaimer=rules.disclaimer or "For counsel's review — not legal advice.",
                     convention=CONVENTION, discovered_at=facts.discovered_at, timezone=facts.timezone,
                     items=items, not_considered=skipped)


def _regime_excluded(regime: Mapping[str, Any], facts: IncidentFacts) -> str | None:
    state = regime.get("state")
    if state and state not in facts.resident_states:
        return f"no {state} residents recorded for the affected systems"
    missing = [flag for flag in regime.get("requires") or () if flag not in facts.flags]
    if missing:
        return "applies only to organisations flagged " + ", ".join(missing)
    wanted = regime.get("data_any")
    if wanted and facts.data_categories and not set(wanted) & facts.data_categories:
        return "none of its data categories (" + ", ".join(wanted) + ") recorded for the affected systems"
    return None


def _data_conditions(wanted: Any, facts: IncidentFacts) -> list[str]:
    if not wanted:
        return []
    if not facts.data_categories:
        return ["if the exposed data includes " + " / ".join(wanted) + " (data categories unknown)"]
    if not set(wanted) & facts.data_categories:
        return ["if the exposed data includes " + " / ".join(wanted)]
    return []


def _notice_item(regime: Mapping[str, Any], notice: Mapping[str, Any], facts: IncidentFacts, zone: ZoneInfo,
                 conditions: list[str]) -> ChecklistItem:
    conditions = conditions + _data_conditions(notice.get("data_any"), facts)
    status = "conditional" if conditions else "applies"
    if notice.get("only_if") and notice["only_if"] not in facts.flags:
        conditions.append(f"only if the organisation is {notice['only_if'].replace('_', ' ')}")
        status = "conditional"
    threshold = notice.get("threshold")
    if threshold:
        count = _count(threshold.get("counts", "total"), regime.get("state"), facts)
        if count is None:
            conditions.append(f"if {threshold['text']} (count not known)")
            status = "conditional"
        elif not _compare(count, str(threshold["op"]), int(threshold["value"])):
            conditions.append(f"threshold not met: {count} known, rule is {threshold['text']}")
            status = "threshold not met"
    deadline, text = _deadline(notice, facts, zone)
    return ChecklistItem(
        regime_id=str(regime["id"]), title=str(regime["title"]), jurisdiction=str(regime["jurisdiction"]),
        citation=str(regime["citation"]), kind="notice", party=str(notice["to"]),
        standard=str(notice.get("standard", "")), status=status, conditions=conditions, deadline=deadline,
        deadline_text=text, note=str(notice.get("note", "")), sources=list(regime.get("sources") or ()),
        confidence=str(regime.get("confidence", "")), clock=str(notice["clock"]),
        starts=str(notice.get("starts", "discovery")))


def _count(kind: str, state: str | None, facts: IncidentFacts) -> int | None:
    if kind == "state" and state:
        return facts.residents_by_state.get(state)
    if kind == "state_max":
        return max(facts.residents_by_state.values()) if facts.residents_by_state else None
    return facts.total_affected


def _compare(count: int, op: str, value: int) -> bool:
    return {">=": count >= value, ">": count > value, "<": count < value, "<=": count <= value}[op]


def _deadline(notice: Mapping[str, Any], facts: IncidentFacts,
              zone: ZoneInfo) -> tuple[dt.datetime | None, str]:
    clock = str(notice["clock"])
    if clock == "asap":
        return None, "no calendar deadline — " + str(notice.get("standard", "as soon as practicable"))
    value = int(notice["value"])
    starts = str(notice.get("starts", "discovery"))
    unit = _UNITS[clock]
    trigger, pending = _trigger(starts, facts, zone)
    if trigger is None:
        return None, f"{value} {unit} after {pending} (date not yet known)"
    if clock == "hours":
        due = trigger + dt.timedelta(hours=value)
        local = due.astimezone(zone)
        text = f"{due.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC ({local:%Y-%m-%d %H:%M %Z}) — {value} hours"
        return due, text + _pending_suffix(pending)
    start_day = trigger.astimezone(zone).date()
    day = start_day + dt.timedelta(days=value) if clock == "days" else add_business_days(start_day, value)
    due = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=zone)
    return due, f"{day:%A %d %B %Y}, end of day ({facts.timezone}) — {value} {unit}" + _pending_suffix(pending)


def _pending_suffix(pending: str) -> str:
    return f"; earlier if {pending} comes first" if pending else ""


def _trigger(starts: str, facts: IncidentFacts, zone: ZoneInfo) -> tuple[dt.datetime | None, str]:
    """Return (trigger time or None, label of events still unknown)."""
    if starts.startswith("earliest_of:"):
        events = starts.split(":", 1)[1].split(",")
        known = [t for t in (_event_time(e, facts, zone) for e in events) if t is not None]
        unknown = [EVENT_LABELS.get(e, e) for e in events if _event_time(e, facts, zone) is None]
        if not known:
            return None, " or ".join(unknown)
        return min(known), " or ".join(unknown)
    when = _event_time(starts, facts, zone)
    return (when, "") if when is not None else (None, EVENT_LABELS.get(starts, starts))


def _event_time(event: str, facts: IncidentFacts, zone: ZoneInfo) -> dt.datetime | None:
    if event == "discovery":
        return facts.discovered_at
    if event == "calendar_year_end":
        year = facts.discovered_at.astimezone(zone).year
        return dt.datetime(year, 12, 31, 12, 0, tzinfo=zone)
    return facts.events.get(event)


def add_business_days(start: dt.date, count: int) -> dt.date:
    """The date ``count`` business days after ``start`` (start excluded; weekends and federal holidays skipped)."""
    day = start
    remaining = count
    while remaining > 0:
        day += dt.timedelta(days=1)
        if day.weekday() < 5 and day not in us_federal_holidays(day.year):
            remaining -= 1
    return day


@cache
def us_federal_holidays(year: int) -> frozenset[dt.date]:
    """U.S. federal holidays (5 U.S.C. 6103) as observed: Saturday → Friday before, Sunday → Monday after."""
    def nth(month: int, weekday: int, n: int) -> dt.date:
        first = dt.date(year, month, 1)
        return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))

    def last(month: int, weekday: int) -> dt.date:
        end = dt.date(year, month + 1, 1) - dt.timedelta(days=1)
        return end - dt.timedelta(days=(end.weekday() - weekday) % 7)

    def observed(day: dt.date) -> dt.date:
        return day - dt.timedelta(days=1) if day.weekday() == 5 else (
            day + dt.timedelta(days=1) if day.weekday() == 6 else day)

    fixed = [dt.date(year, 1, 1), dt.date(year, 6, 19), dt.date(year, 7, 4), dt.date(year, 11, 11),
             dt.date(year, 12, 25)]
    floating = [nth(1, 0, 3), nth(2, 0, 3), last(5, 0), nth(9, 0, 1), nth(10, 0, 2), nth(11, 3, 4)]
    days = {observed(d) for d in fixed} | set(floating)
    if dt.date(year + 1, 1, 1).weekday() == 5:  # next New Year's Day observed on Dec 31
        days.add(dt.date(year, 12, 31))
    return frozenset(days)
