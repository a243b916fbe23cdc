"""The one alert model every source is normalised to, and the checks every alert field passes.

Severity is stored on a **0–100** scale so one rule threshold works for every source:

=============  ==========================================================  ==========================
source         native field                                                normalised
=============  ==========================================================  ==========================
wazuh          ``rule.level`` 0–15                                         ``round(level * 100 / 15)``
elastic        ``kibana.alert.risk_score`` 0–100 (else ``severity`` word)  as is / word table
splunk         ``result.severity`` / ``result.urgency`` number or word     0–100 as is / word table
alertmanager   ``labels.severity`` word                                    word table
generic        ``severity`` 0–100 (or a word)                              as is / word table
=============  ==========================================================  ==========================

Word table: info/informational 10, low 25, warning/medium 50, high/error 75, critical/page/emergency 100.
The native value is kept in ``raw`` (persisted) for the record.

Host, user and source IP are validated here (the same rules as the CLI), so an alert can never carry
shell or LDAP syntax into a plan; a malformed value rejects the request with 400 naming the field.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.errors import InputError
from agent.validate import inventory_name, username

__all__ = [
    "MalformedAlert",
    "NormalizedAlert",
    "checked",
    "dig",
    "first",
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
    host: str
    user: str | None = None
    source_ip: str | None = None
    title: str = ""
    tags: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)
    actionable: bool = True  # False for e.g. Alertmanager "resolved" notifications: recorded, never acted on

    def fields(self) -> dict[str, Any]:
        """Values rules may map into runbook parameters (``${host}`` …)."""
        return {"host": self.host, "user": self.user, "source_ip": self.source_ip, "rule_id": self.rule_id,
                "severity": self.severity, "source": self.source, "title": self.title}


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


def checked(source: str, rule_id: str | None, severity: int, host: str | None, user: str | None,
            source_ip: str | None, title: str | None = None, tags: tuple[str, ...] = (),
            raw: dict[str, Any] | None = None, actionable: bool = True) -> NormalizedAlert:
    """Build a :class:`NormalizedAlert`, refusing missing hosts and values that could inject."""
    if not host:
        raise MalformedAlert("host: the alert names no host (it is required to act on anything)")
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
    return NormalizedAlert(source=source, rule_id=(rule_id or "")[:200], severity=severity, host=host,
                           user=user or None, source_ip=source_ip or None, title=(title or "")[:300],
                           tags=tags, raw=raw or {}, actionable=actionable)
