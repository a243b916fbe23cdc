"""Splunk: the payload of a saved search's (alert's) built-in webhook alert action.

Documented shape (help.splunk.com, "Use a webhook alert action", Splunk Enterprise 9.x/10.0)::

    {"result": {"sourcetype": "mongod", "count": "8"},
     "sid": "scheduler_admin_search_W2_at_14232356_132",
     "results_link": "http://web.example.local:8000/app/search/@go?sid=scheduler_admin_search_W2_at_14232356_132",
     "search_name": null, "owner": "admin", "app": "search"}

Only the first result row is sent, and fields may be null — the documented example itself has
``"search_name": null`` —, so nothing but ``result`` is required. Rule id: ``search_name``, else
``result.search_name``/``result.rule_name``, else empty (match such alerts with ``source:`` and
``rule_name``). Host: ``result.host``, ``result.dest``, ``result.dest_host``, ``result.dest_nt_host``. User:
``result.user``, ``result.username``, ``result.dest_user``, ``result.src_user``. Source IP: ``result.src_ip``,
``result.srcip``, ``result.src``, ``result.src_addr``. Severity: ``result.severity`` or ``result.urgency`` (word
or 0–100 number; 50 when absent). Event time: ``result._time`` (epoch seconds or ISO 8601).

Authentication: the built-in action cannot set request headers (FIDELITY.md, "Alert senders"), so this is the
source that needs ``url_token: true`` (``?token=`` in the URL; see :mod:`agent.intake.auth`).
"""

from __future__ import annotations

from typing import Any

from agent.intake.model import MalformedAlert, NormalizedAlert, checked, event_time, first, severity_any, text

__all__ = ["normalize"]


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    result = payload.get("result")
    if not isinstance(result, dict):
        raise MalformedAlert("result: a Splunk webhook carries the first result row as the 'result' object")
    search = (text(payload.get("search_name"), where="search_name")
              or first(result, "search_name", "rule_name", where="result"))
    host = first(result, "host", "dest", "dest_host", "dest_nt_host", where="result")
    user = first(result, "user", "username", "dest_user", "src_user", where="result")
    source_ip = first(result, "src_ip", "srcip", "src", "src_addr", where="result")
    sev = result.get("severity", result.get("urgency"))
    severity = severity_any(sev, where="result.severity")
    sid = text(payload.get("sid"), where="sid")
    return [checked(source, search, severity, host, user, source_ip, search,
                    raw={"sid": sid, "severity": sev}, rule_name=search,
                    when=event_time(result.get("_time"), where="result._time"), key=sid)]
