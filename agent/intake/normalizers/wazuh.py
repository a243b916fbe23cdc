"""Wazuh: the alert JSON as the manager writes it to ``alerts.json`` (what integrations and custom hooks post).

Example (abridged)::

    {"timestamp": "2024-05-02T03:12:44.118+0000",
     "rule": {"level": 10, "description": "sshd: authentication success after brute force", "id": "40112",
              "groups": ["syslog", "sshd", "authentication_success"]},
     "agent": {"id": "003", "name": "victim", "ip": "10.77.0.20"},
     "data": {"srcip": "10.77.1.130", "dstuser": "alice"}, "full_log": "...", "location": "/var/log/auth.log"}

Host: ``agent.name`` (else ``agent.ip``; the manager itself, agent 000, is the host only when nothing else is
named). User: ``data.dstuser``, ``data.srcuser``, ``data.win.eventdata.targetUserName``. Source IP: ``data.srcip``,
``data.win.eventdata.ipAddress``. Severity: ``rule.level`` 0–15 scaled to 0–100. A body wrapped as
``{"alert": {...}}`` (some integration scripts) is unwrapped.
"""

from __future__ import annotations

from typing import Any

from agent.intake.model import (
    MalformedAlert,
    NormalizedAlert,
    checked,
    dig,
    first,
    severity_from_number,
    text,
)

__all__ = ["normalize"]


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    if "rule" not in payload and isinstance(payload.get("alert"), dict):
        payload = payload["alert"]
    rule = payload.get("rule")
    if not isinstance(rule, dict):
        raise MalformedAlert("rule: a Wazuh alert has a 'rule' object")
    level = rule.get("level")
    if not isinstance(level, (int, float)) or isinstance(level, bool):
        raise MalformedAlert("rule.level: a number 0-15 is required")
    severity = severity_from_number(float(level), where="rule.level", scale=15)
    host = first(payload, "agent.name", "agent.ip", where="")
    user = first(payload, "data.dstuser", "data.srcuser", "data.win.eventdata.targetUserName", "data.user",
                 where="")
    source_ip = first(payload, "data.srcip", "data.win.eventdata.ipAddress", "data.src_ip", where="")
    raw_groups = rule.get("groups")
    groups: list[Any] = raw_groups if isinstance(raw_groups, list) else []
    tags = tuple(str(g)[:64] for g in groups[:20] if isinstance(g, str))
    return [checked(source, text(rule.get("id"), where="rule.id"), severity, host, user, source_ip,
                    text(rule.get("description"), where="rule.description", limit=2000), tags,
                    raw={"level": level, "id": text(dig(payload, "id"), where="id")})]
