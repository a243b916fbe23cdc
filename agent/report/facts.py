"""``agent incidents facts``: what counsel learns after containment, recorded in the audit log with its source.

Why in the audit log: the report is built from the log alone, so every fact the checklist rests on (which time
starts the legal clocks, counts per state, organisation status) must be there — each with who stated it, from
what source and how sure they are — and later corrections are new records, never edits.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.report.vocabulary import ORGANISATION_FACTS, UnknownCategory, check_categories

__all__ = ["CLOCK_EVENTS", "CONFIDENCE", "add_fact_arguments", "facts_record"]

#: --flag -> event name in ``incident.facts``.events (the names obligations.yaml's ``starts`` use)
CLOCK_EVENTS = {"alert_time": "alert_event", "discovered": "discovery", "determined": "determination",
                "consumers_notified": "consumer_notice", "material": "materiality_determination"}
#: which recorded time counsel says starts the "from discovery" clocks
CLOCK_STARTS = {"alert": "alert_event", "discovery": "discovery", "determination": "determination"}
CONFIDENCE = ("confirmed", "high", "medium", "low", "estimate")


def add_fact_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``agent incidents facts ID`` (kept here, next to the code that validates them)."""
    parser.add_argument("--alert-time", metavar="ISO-TIME", help="when the alerted event happened (from the alert)")
    parser.add_argument("--discovered", metavar="ISO-TIME", help="when the organisation discovered the breach")
    parser.add_argument("--determined", metavar="ISO-TIME", help="when it was determined that a breach occurred")
    parser.add_argument("--consumers-notified", metavar="ISO-TIME", help="when notices to individuals were sent")
    parser.add_argument("--material", metavar="ISO-TIME", help="when the incident was determined material (SEC)")
    parser.add_argument("--clock-start", choices=tuple(CLOCK_STARTS),
                        help="which recorded time starts the 'from discovery' legal clocks (counsel's decision)")
    parser.add_argument("--affected", type=int, metavar="N", help="number of affected individuals, if known")
    parser.add_argument("--residents", action="append", default=[], metavar="STATE=N",
                        help="people affected in one state (repeatable); replaces the inventory's estimate")
    parser.add_argument("--data", action="append", default=[], metavar="CATEGORY",
                        help="a data category found to be exposed (repeatable; closed vocabulary)")
    parser.add_argument("--org", action="append", default=[], metavar="FACT=yes|no",
                        help="organisation fact for this incident: " + ", ".join(ORGANISATION_FACTS) + ", or name=TEXT")
    parser.add_argument("--system", action="append", default=[], metavar="NAME",
                        help="an inventory system found to be involved (repeatable): its data set is snapshotted "
                             "into the incident's scope as the inventory describes it now")
    parser.add_argument("--pending", action="append", default=[], metavar="TEXT",
                        help="a decision still pending (repeatable), listed in the report")
    parser.add_argument("--source", metavar="TEXT", help="where these facts come from (e.g. 'forensic report v2')")
    parser.add_argument("--confidence", choices=CONFIDENCE, default="stated", metavar="|".join(CONFIDENCE),
                        help="how sure the source is")


def facts_record(args: argparse.Namespace, *, recorded_by: str) -> dict[str, Any]:
    """Validate the options and return the fields of an ``incident.facts`` record; errors name option and value."""
    from agent.errors import InputError
    from agent.validate import iso_time

    events: dict[str, str] = {}
    for option, event in CLOCK_EVENTS.items():
        value = getattr(args, option, None)
        if value is not None:
            events[event] = iso_time(value, field="--" + option.replace("_", "-")).isoformat()
    affected = getattr(args, "affected", None)
    if affected is not None and affected < 0:
        raise InputError(f"--affected: {affected} must not be negative")
    residents: dict[str, int] = {}
    for text in getattr(args, "residents", []) or []:
        state, _, count = text.partition("=")
        if not (len(state) == 2 and state.isalpha() and state.isupper()) or not count.isdigit():
            raise InputError(f"--residents: {text!r} is not STATE=N (e.g. MA=1225; two capital letters, a count)")
        residents[state] = int(count)
    try:
        categories = check_categories(getattr(args, "data", []) or [], where="--data")
    except UnknownCategory as exc:
        raise InputError(str(exc)) from None
    organisation: dict[str, Any] = {}
    for text in getattr(args, "org", []) or []:
        key, _, value = text.partition("=")
        if key == "name" and value:
            organisation["name"] = value
        elif key in ORGANISATION_FACTS and value.lower() in ("yes", "no", "true", "false"):
            organisation[key] = value.lower() in ("yes", "true")
        else:
            raise InputError(f"--org: {text!r} is not FACT=yes|no with FACT one of "
                             f"{', '.join(ORGANISATION_FACTS)} (or name=TEXT)")
    clock = getattr(args, "clock_start", None)
    pending = [p for p in getattr(args, "pending", []) or [] if p.strip()]
    record: dict[str, Any] = {"events": events, "total_affected": affected, "recorded_by": recorded_by,
                              "source": getattr(args, "source", None) or f"stated by {recorded_by}",
                              "confidence": getattr(args, "confidence", "stated")}
    for key, value in (("residents", residents), ("data_categories", categories), ("organisation", organisation),
                       ("pending", pending)):
        if value:
            record[key] = value
    if clock:
        record["clock_start"] = CLOCK_STARTS[clock]
    if not (events or residents or categories or organisation or pending or clock or affected is not None
            or getattr(args, "system", None)):
        raise InputError("nothing to record: give a time (--discovered, --determined, --alert-time, "
                         "--consumers-notified, --material), --clock-start, --affected, --residents, --data, --org, "
                         "--system or --pending")
    return record
