"""The one alert model every source is normalised to, and the checks every alert field passes.

Severity is stored on a **0–100** scale so one rule threshold works for every source:

=============  ==========================================================  ==========================
source         native field                                                normalised
=============  ==========================================================  ==========================
wazuh          ``rule.level`` 0–15                                         ``round(level * 100 / 15)``
elastic        ``kibana.alert.risk_score`` 0–100 (else ``severity`` word)  as is / word table
splunk         ``result.severity`` / ``result.urgency`` number or word     0–100 as is / word table
alertmanager   ``labels.severity`` word                                    word table
suricata       ``alert.severity`` 1–4 (1 is the most severe)               1→100, 2→75, 3→50, 4→25
generic        ``severity`` 0–100 (or a word)                              as is / word table
=============  ==========================================================  ==========================

Word table: info/informational 10, low 25, warning/medium 50, high/error 75, critical/page/emergency 100.
The native value is kept in ``raw`` (persisted) for the record.

Host, user and source IP are validated here (the same rules as the CLI), so an alert can never carry
shell or LDAP syntax into a plan; a malformed value rejects the request with 400 naming the field. An alert
must name at least one of host, user or source IP: identity alerts (impossible travel), network alerts and
cluster-level alerts name no host, and rules that target the user or the address act on them all the same.

**Event time**: the time the sender says the event happened (Wazuh ``timestamp``, Elastic
``kibana.alert.original_time``/``@timestamp``, Splunk ``result._time``, Alertmanager ``startsAt``, Suricata
``timestamp``, generic ``event_time``), kept beside the time the daemon received the alert; which of the two
starts a legal clock is counsel's decision (``agent incidents facts``), never intake's.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agent.errors import InputError
from agent.validate import inventory_name, username

__all__ = [
    "MalformedAlert",
    "NormalizedAlert",
    "checked",
    "dig",
    "event_time",
    "first",
    "invalid",
    "severity_any",
    "severity_from_number",
    "severity_from_word",
    "text",
]

_WORDS = {"info": 10, "informational": 10, "low": 25, "minor": 25, "warning": 50, "medium": 50, "moderate": 50,
          "high": 75, "major": 75, "error": 75, "critical": 100, "page": 100, "emergency": 100, "severe": 100}


class MalformedAlert(ValueError):
    """The payload is not a valid alert of its format; the message names the field (answered with 400)."""


@dataclass
class NormalizedAlert:
    source: str
    rule_id: str
    severity: int  # 0-100
    host: str | None
    user: str | None = None
    source_ip: str | None = None
    title: str = ""
    tags: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
    actionable: bool = True  # False for e.g. Alertmanager "resolved" notifications: recorded, never acted on
    rule_name: str = ""  # the sender's name for its rule (Elastic rule name, Wazuh description, Splunk search)
    event_time: datetime | None = None  # when the sender says it happened (UTC); None when it does not say
    invalid: str | None = None  # one alert of a batch that is not valid: recorded with this reason, never acted on
    resolved: bool = False  # the sender says the condition is over (Alertmanager "resolved", Wazuh AR "delete")
    key: str | None = None  # the sender's identity of the alert (Alertmanager fingerprint), links resolved to firing

    def fields(self) -> dict[str, Any]:
        """Values rules may map into runbook parameters (``${host}`` …)."""
        return {"host": self.host, "user": self.user, "source_ip": self.source_ip, "rule_id": self.rule_id,
                "severity": self.severity, "source": self.source, "title": self.title, "rule_name": self.rule_name}


def severity_from_word(word: str, *, where: str) -> int:
    key = word.strip().lower()
    if key in _WORDS:
        return _WORDS[key]
    try:
        return severity_from_number(float(key), where=where)
    except ValueError:
        raise MalformedAlert(f"{where}: unknown severity {word!r} (known: {', '.join(sorted(_WORDS))}, "
                             "or a number 0-100)") from None


def severity_from_number(value: float, *, where: str, scale: float = 100.0) -> int:
    if isinstance(value, bool) or math.isnan(value) or not 0 <= value <= scale:
        raise MalformedAlert(f"{where}: severity {value!r} is outside 0-{scale:g}")
    return round(value * 100.0 / scale)


def severity_any(value: Any, *, where: str, default: int = 50) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return severity_from_number(float(value), where=where)
    if isinstance(value, str):
        return severity_from_word(value, where=where)
    raise MalformedAlert(f"{where}: severity must be a number or a word, got {type(value).__name__}")


def dig(doc: Any, path: str) -> Any:
    """``doc["a"]["b"]`` for ``"a.b"``, also accepting flattened keys (``doc["a.b"]``) as Elastic sends them."""
    if not isinstance(doc, Mapping):
        return None
    if path in doc:
        return doc[path]
    head, sep, rest = path.partition(".")
    while sep:
        if head in doc and isinstance(doc[head], Mapping):
            found = dig(doc[head], rest)
            if found is not None:
                return found
        nxt, sep, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return None


def text(value: Any, *, where: str, limit: int = 255) -> str | None:
    """A scalar alert field as text (numbers accepted), None when absent; lists take their first element."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise MalformedAlert(f"{where}: expected text, got {type(value).__name__}")
    out = str(value).strip()
    if len(out) > limit:
        raise MalformedAlert(f"{where}: longer than {limit} characters")
    return out or None


def first(doc: Any, *paths: str, where: str) -> str | None:
    for path in paths:
        found = text(dig(doc, path), where=f"{where}.{path}" if where else path)
        if found:
            return found
    return None


_ZERO_TIME = ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00")


def event_time(value: Any, *, where: str) -> datetime | None:
    """The sender's event time as an aware UTC datetime, None when absent.

    Accepts ISO 8601 with ``Z``, ``+00:00`` or ``+0000`` offsets (Wazuh writes ``2021-02-01T20:58:44.830+0000``),
    Go's nanosecond fractions (Alertmanager), and epoch seconds as a number or numeric string (Splunk
    ``_time``). Go's zero time (``0001-01-01T00:00:00Z``, Alertmanager's "no end") means absent. A time
    without an offset is taken as UTC (Suricata writes local time with an offset; older versions without).
    """
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _epoch(float(value), where)
    if not isinstance(value, str):
        raise MalformedAlert(f"{where}: expected a time, got {type(value).__name__}")
    text_ = value.strip()
    if text_ in _ZERO_TIME or text_.startswith("0001-01-01"):
        return None
    try:
        return _epoch(float(text_), where)
    except ValueError:
        pass
    iso = text_[:-1] + "+00:00" if text_.endswith(("Z", "z")) else text_
    if len(iso) > 5 and iso[-5] in "+-" and iso[-4:].isdigit() and ":" not in iso[-5:]:
        iso = iso[:-2] + ":" + iso[-2:]  # +0000 -> +00:00
    head, dot, frac = iso.partition(".")
    if dot:  # Go writes up to 9 fraction digits; Python reads at most 6
        digits = len(frac) - len(frac.lstrip("0123456789"))
        frac = frac[:min(digits, 6)] + frac[digits:]
        iso = head + "." + frac
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise MalformedAlert(f"{where}: {text_[:40]!r} is not an ISO 8601 time or epoch seconds") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _epoch(value: float, where: str) -> datetime:
    if math.isnan(value) or not 0 < value < 32503680000:
        raise MalformedAlert(f"{where}: {value!r} is not a plausible epoch time")
    return datetime.fromtimestamp(value, UTC)


def checked(source: str, rule_id: str | None, severity: int, host: str | None, user: str | None,
            source_ip: str | None, title: str | None = None, tags: tuple[str, ...] = (),
            raw: dict[str, Any] | None = None, actionable: bool = True, *, rule_name: str | None = None,
            when: datetime | None = None, resolved: bool = False, key: str | None = None) -> NormalizedAlert:
    """Build a :class:`NormalizedAlert`, refusing alerts that name nothing and values that could inject."""
    if not host and not user and not source_ip:
        raise MalformedAlert("host: the alert names no host, user or source address (nothing to act on)")
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            try:
                inventory_name(host, field="host")
            except InputError as exc:
                raise MalformedAlert(str(exc)) from None
    if user:
        try:
            username(user, field="user")
        except InputError as exc:
            raise MalformedAlert(str(exc)) from None
    if source_ip:
        try:
            source_ip = str(ipaddress.ip_address(source_ip))
        except ValueError:
            raise MalformedAlert(f"source_ip: {source_ip[:60]!r} is not an IP address") from None
    return NormalizedAlert(source=source, rule_id=(rule_id or "")[:200], severity=severity, host=host or None,
                           user=user or None, source_ip=source_ip or None, title=(title or "")[:300],
                           tags=tags, raw=raw or {}, actionable=actionable and not resolved,
                           rule_name=(rule_name or title or "")[:300], event_time=when, resolved=resolved,
                           key=key)


def invalid(source: str, reason: str, *, rule_id: str | None = None, raw: dict[str, Any] | None = None,
            key: str | None = None) -> NormalizedAlert:
    """One alert of a batch that is not valid: recorded (disposition ``invalid``) beside the valid ones."""
    return NormalizedAlert(source=source, rule_id=(rule_id or "")[:200], severity=0, host=None,
                           raw={**(raw or {}), "error": reason[:500]}, actionable=False, invalid=reason[:500],
                           key=key)
