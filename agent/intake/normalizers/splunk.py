"""Splunk: the payload of a saved search's (alert's) built-in webhook action.

Example::

    {"result": {"host": "victim", "user": "alice", "src_ip": "10.77.1.130", "severity": "high", "count": "31"},
     "sid": "scheduler__admin__search__RMD5b3f7e_at_1714619580_1", "results_link": "https://splunk:8000/...",
     "search_name": "SSH brute force then success", "owner": "admin", "app": "search"}

Only the first result row is sent by Splunk. Rule id: ``search_name``. Host: ``result.host``, ``result.dest``,
``result.dest_host``. User: ``result.user``, ``result.dest_user``. Source IP: ``result.src_ip``, ``result.src``.
Severity: ``result.severity`` or ``result.urgency`` (word or 0–100 number; 50 when absent).
"""

from __future__ import annotations

from typing import Any

from agent.intake.model import MalformedAlert, NormalizedAlert, checked, first, severity_any, text

__all__ = ["normalize"]


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    result = payload.get("result")
    if not isinstance(result, dict):
        raise MalformedAlert("result: a Splunk webhook carries the first result row as the 'result' object")
    search = text(payload.get("search_name"), where="search_name")
    if not search:
        raise MalformedAlert("search_name: missing (it is the rule id of a Splunk alert)")
    host = first(result, "host", "dest", "dest_host", "dest_nt_host", where="result")
    user = first(result, "user", "dest_user", "src_user", where="result")
    source_ip = first(result, "src_ip", "src", where="result")
    sev = result.get("severity", result.get("urgency"))
    severity = severity_any(sev, where="result.severity")
    return [checked(source, search, severity, host, user, source_ip, search,
                    raw={"sid": text(payload.get("sid"), where="sid"), "severity": sev})]
