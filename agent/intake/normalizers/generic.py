"""The documented generic format, for anything that can post JSON (scripts, SOAR tools, other SIEMs).

::

    {"rule_id": "edr-4471",          # required: what detected it (rules match on it)
     "host": "web01",                # inventory name or address of the host concerned
                                     # (at least one of host, user, source_ip is required)
     "severity": 80,                 # 0-100, or a word: info, low, medium, high, critical (default 50)
     "user": "alice",                # optional: account seen in the alert
     "source_ip": "203.0.113.7",     # optional: attacker's address
     "title": "Cobalt Strike beacon", "tags": ["edr"],   # optional
     "rule_name": "Beacon detected", # optional: the detector's name for its rule (rules may match it)
     "event_time": "2026-12-04T18:01:02Z"}  # optional: when it happened (ISO 8601 or epoch seconds)

Unknown keys are refused (a typo such as ``hots`` must not silently drop the host).
"""

from __future__ import annotations

from typing import Any

from agent.intake.model import MalformedAlert, NormalizedAlert, checked, event_time, severity_any, text

__all__ = ["FIELDS", "normalize"]

FIELDS = {"rule_id", "host", "severity", "user", "source_ip", "title", "tags", "rule_name", "event_time"}


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    unknown = sorted(set(payload) - FIELDS)
    if unknown:
        raise MalformedAlert(f"{unknown[0]}: unknown field (known: {', '.join(sorted(FIELDS))})")
    for key in ("rule_id", "host", "user", "source_ip", "title", "severity", "rule_name", "event_time"):
        if isinstance(payload.get(key), (list, dict)):
            raise MalformedAlert(f"{key}: expected a single value, got a {type(payload[key]).__name__}")
    rule_id = text(payload.get("rule_id"), where="rule_id", limit=200)
    if not rule_id:
        raise MalformedAlert("rule_id: required")
    tags = payload.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and len(t) <= 64 for t in tags) or len(tags) > 50:
        raise MalformedAlert("tags: a list of at most 50 short strings")
    return [checked(source, rule_id, severity_any(payload.get("severity"), where="severity"),
                    text(payload.get("host"), where="host"), text(payload.get("user"), where="user"),
                    text(payload.get("source_ip"), where="source_ip", limit=64),
                    text(payload.get("title"), where="title", limit=2000), tuple(tags),
                    rule_name=text(payload.get("rule_name"), where="rule_name", limit=300),
                    when=event_time(payload.get("event_time"), where="event_time"))]
