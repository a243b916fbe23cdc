"""Suricata EVE JSON: one JSON object per line, as Suricata writes ``eve.json`` (docs.suricata.io, "Eve JSON
Format"); a body may carry one line or many (a batch, for example a shipper's flush). Posted to
``/alerts/<source>`` with ``format: suricata`` — see ``docs/alert-senders.md`` for the shipper line.

Only ``event_type: alert`` lines are alerts; other event types (flow, dns, http, stats, ...) in the same batch
are skipped, not refused. A line that is not valid is recorded as ``invalid`` beside the others::

    {"timestamp": "2017-04-07T22:24:37.251547+0100", "flow_id": 586497171462735, "event_type": "alert",
     "src_ip": "192.168.2.14", "src_port": 50096, "dest_ip": "209.53.113.5", "dest_port": 80, "proto": "TCP",
     "alert": {"action": "allowed", "gid": 1, "signature_id": 2018358, "rev": 10,
               "signature": "ET HUNTING GENERIC SUSPICIOUS POST to Dotted Quad with Fake Browser 1",
               "category": "Potentially Bad Traffic", "severity": 2}}

Rule id ``alert.signature_id``; rule name ``alert.signature``. Severity ``alert.severity`` 1–4 where **1 is the
most severe** (1→100, 2→75, 3→50, 4→25). Host: the attacked side — ``alert.target.ip`` when the signature uses
the ``target`` keyword, else ``dest_ip``; source IP: ``alert.source.ip``, else ``src_ip``. Event time
``timestamp``.
"""

from __future__ import annotations

import json
from typing import Any

from agent.intake.model import MalformedAlert, NormalizedAlert, checked, dig, event_time, first, invalid, text

__all__ = ["normalize", "parse_lines"]

_SEVERITY = {1: 100, 2: 75, 3: 50, 4: 25}
MAX_LINES = 5000


def parse_lines(body: bytes) -> list[Any]:
    """The EVE objects of a body: JSON lines (blank lines ignored), or one JSON array of objects.

    A line that is not JSON becomes a :class:`MalformedAlert` entry (recorded as invalid by :func:`normalize`).
    """
    stripped = body.strip()
    if stripped.startswith(b"["):
        try:
            items = json.loads(stripped)
        except (ValueError, RecursionError) as exc:
            raise MalformedAlert(f"body: not a JSON array of EVE objects: {str(exc)[:120]}") from None
        return list(items)
    out: list[Any] = []
    for n, line in enumerate(stripped.split(b"\n"), start=1):
        if not line.strip():
            continue
        if len(out) >= MAX_LINES:
            raise MalformedAlert(f"body: more than {MAX_LINES} EVE lines in one request")
        try:
            out.append(json.loads(line))
        except (ValueError, RecursionError) as exc:
            out.append(MalformedAlert(f"line {n}: not JSON: {str(exc)[:120]}"))
    return out


def _one(event: dict[str, Any], where: str, source: str) -> NormalizedAlert:
    alert = event.get("alert")
    if not isinstance(alert, dict):
        raise MalformedAlert(f"{where}.alert: an EVE alert carries an 'alert' object")
    sid = alert.get("signature_id")
    if isinstance(sid, bool) or not isinstance(sid, (int, str)) or str(sid) == "":
        raise MalformedAlert(f"{where}.alert.signature_id: required (the rule's sid)")
    level = alert.get("severity", 3)
    if level not in _SEVERITY or isinstance(level, bool):
        raise MalformedAlert(f"{where}.alert.severity: {level!r} is not 1-4 (1 is the most severe)")
    host = first(event, "alert.target.ip", "dest_ip", where=where)
    source_ip = first(event, "alert.source.ip", "src_ip", where=where)
    name = text(alert.get("signature"), where=f"{where}.alert.signature", limit=2000)
    flow = dig(event, "flow_id")
    return checked(source, str(sid), _SEVERITY[level], host, None, source_ip, name,
                   raw={"severity": level, "flow_id": flow, "category": alert.get("category")},
                   rule_name=name, when=event_time(event.get("timestamp"), where=f"{where}.timestamp"),
                   key=str(flow) if flow is not None else None)


def normalize(events: list[Any], source: str) -> list[NormalizedAlert]:
    out = []
    for i, event in enumerate(events):
        where = f"line {i + 1}"
        if isinstance(event, MalformedAlert):
            out.append(invalid(source, str(event)))
            continue
        if not isinstance(event, dict):
            out.append(invalid(source, f"{where}: an EVE record is a JSON object"))
            continue
        if event.get("event_type") != "alert":
            continue  # flow, dns, stats ...: not alerts
        try:
            out.append(_one(event, where, source))
        except MalformedAlert as exc:
            out.append(invalid(source, str(exc)))
    return out
