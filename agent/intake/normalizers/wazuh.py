"""Wazuh: the alert JSON the manager writes to ``alerts.json``, and the two envelopes Wazuh itself wraps it in.

Accepted bodies (source: wazuh/wazuh and wazuh/wazuh-documentation, cited per shape):

* **the alert** — what a ``custom-*`` integration script reads from the file integratord hands it and posts::

    {"timestamp": "2022-06-17T14:46:27.816+0000", "id": "1655477187.49701",
     "rule": {"level": 15, "description": "Shellshock attack detected", "id": "31168", "groups": [...]},
     "agent": {"id": "005", "name": "linux-agent", "ip": "172.30.0.30"}, "data": {"srcip": "192.168.56.3"}, ...}

* **integratord's shuffle envelope** — ``integrations/shuffle.py`` ``generate_msg()`` posts
  ``{"severity": 1-3, "pretext": "WAZUH Alert", "title": ..., "rule_id": ..., "timestamp": ..., "id": ...,
  "all_fields": <the alert>}``; the alert is read from ``all_fields``.
* **the active-response envelope** — since 4.2 ``wazuh-execd`` hands AR scripts
  ``{"version": 1, "origin": {...}, "command": "add"|"delete", "parameters": {"extra_args": [], "alert": <the
  alert>, "program": ...}}`` (a forwarding AR script posts it as is). ``delete`` is the stateful AR's timeout:
  recorded as resolved, never acted on. ``check_keys``/``continue`` are execd's handshake, not alerts (400).
* ``{"alert": <the alert>}`` — some hand-written integration scripts.

Host: ``agent.name`` (else ``agent.ip``; the manager itself, agent 000, is the host only when nothing else is
named). User: ``data.dstuser``, ``data.srcuser``, ``data.win.eventdata.targetUserName``. Source IP: ``data.srcip``,
``data.win.eventdata.ipAddress``. Severity: ``rule.level`` 0–15 scaled to 0–100. Rule id ``rule.id``, rule
name ``rule.description``, event time ``timestamp``.
"""

from __future__ import annotations

from typing import Any

from agent.intake.model import (
    MalformedAlert,
    NormalizedAlert,
    checked,
    dig,
    event_time,
    first,
    severity_from_number,
    text,
)

__all__ = ["normalize"]


def _unwrap(payload: dict[str, Any]) -> tuple[dict[str, Any], str, bool]:
    """(the alert, which envelope carried it, resolved?)"""
    if "rule" in payload:
        return payload, "alert", False
    params = payload.get("parameters")
    if isinstance(params, dict) and "command" in payload:
        command = payload.get("command")
        if command not in ("add", "delete"):
            raise MalformedAlert(f"command: {command!r} is an active-response handshake, not an alert "
                                 "(expected add or delete)")
        alert = params.get("alert")
        if not isinstance(alert, dict):
            raise MalformedAlert("parameters.alert: an active-response message carries the alert object")
        return alert, "active-response", command == "delete"
    if isinstance(payload.get("all_fields"), dict):
        return payload["all_fields"], "integration", False
    if isinstance(payload.get("alert"), dict):
        return payload["alert"], "wrapped", False
    raise MalformedAlert("rule: a Wazuh alert has a 'rule' object (or comes in an integration's 'all_fields' "
                         "or an active response's 'parameters.alert')")


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    alert, envelope, resolved = _unwrap(payload)
    rule = alert.get("rule")
    if not isinstance(rule, dict):
        raise MalformedAlert("rule: a Wazuh alert has a 'rule' object")
    level = rule.get("level")
    if not isinstance(level, (int, float)) or isinstance(level, bool):
        raise MalformedAlert("rule.level: a number 0-15 is required")
    severity = severity_from_number(float(level), where="rule.level", scale=15)
    host = first(alert, "agent.name", "agent.ip", where="")
    user = first(alert, "data.dstuser", "data.srcuser", "data.win.eventdata.targetUserName", "data.user",
                 where="")
    source_ip = first(alert, "data.srcip", "data.win.eventdata.ipAddress", "data.src_ip", where="")
    raw_groups = rule.get("groups")
    groups: list[Any] = raw_groups if isinstance(raw_groups, list) else []
    tags = tuple(str(g)[:64] for g in groups[:20] if isinstance(g, str))
    description = text(rule.get("description"), where="rule.description", limit=2000)
    alert_id = text(dig(alert, "id"), where="id")
    return [checked(source, text(rule.get("id"), where="rule.id"), severity, host, user, source_ip,
                    description, tags, raw={"level": level, "id": alert_id, "envelope": envelope},
                    rule_name=description, when=event_time(alert.get("timestamp"), where="timestamp"),
                    resolved=resolved, key=alert_id)]
