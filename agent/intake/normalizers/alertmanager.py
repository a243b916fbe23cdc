"""Prometheus Alertmanager: the webhook receiver payload, version 4 (prometheus.io/docs/alerting/latest/configuration
/#webhook_config; ``notify/webhook/webhook.go`` in prometheus/alertmanager)::

    {"version": "4", "status": "firing", "receiver": "containment", "groupKey": "{}:{alertname=\\"X\\"}",
     "truncatedAlerts": 0, "groupLabels": {...}, "commonLabels": {...}, "commonAnnotations": {...},
     "externalURL": "http://am:9093",
     "alerts": [{"status": "firing", "labels": {...}, "annotations": {...}, "startsAt": "...",
                 "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "...", "fingerprint": "c2d1..."}]}

One notification carries a whole group, and Alertmanager treats any 4xx answer as unrecoverable for all of it
(5xx is retried) — so **one bad alert must not lose the others**: an alert that is not valid is returned as an
``invalid`` entry (recorded, answered per alert), and only a body that is not a v4 notification at all is
refused. Rule id: ``labels.alertname``. Host: ``labels.host``, ``hostname``, ``nodename``, ``instance`` (port,
scheme and path stripped). User: ``labels.user``, ``username``. Source IP: ``labels.source_ip``, ``src_ip``.
Alerts that name none of these (cluster-level alerts) are recorded as invalid: there is nothing to act on.
Severity: ``labels.severity`` word. Event time: ``startsAt``. ``resolved`` alerts are recorded and linked to
the firing alert with the same ``fingerprint``; they never act.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from agent.intake.model import (
    MalformedAlert,
    NormalizedAlert,
    checked,
    event_time,
    first,
    invalid,
    severity_from_word,
    text,
)

__all__ = ["normalize"]


def _host(value: str | None) -> str | None:
    if not value:
        return value
    if "://" in value:  # blackbox-style instances are URLs
        return urlsplit(value).hostname or None
    if value.startswith("[") and "]" in value:
        return value[1:value.index("]")]
    if value.count(":") == 1:  # host:port (IPv6 instances are written [addr]:port)
        return value.split(":")[0]
    return value


def _one(alert: Any, where: str, common: dict[str, Any], group_status: Any, source: str) -> NormalizedAlert:
    if not isinstance(alert, dict) or not isinstance(alert.get("labels", {}), dict):
        raise MalformedAlert(f"{where}: an alert is an object with a 'labels' object")
    labels = {**common, **alert.get("labels", {})}
    status = text(alert.get("status") or group_status, where=f"{where}.status") or "firing"
    if status not in ("firing", "resolved"):
        raise MalformedAlert(f"{where}.status: {status!r} is not firing or resolved")
    raw_ann = alert.get("annotations")
    annotations: dict[str, Any] = raw_ann if isinstance(raw_ann, dict) else {}
    word = text(labels.get("severity"), where=f"{where}.labels.severity")
    severity = severity_from_word(word, where=f"{where}.labels.severity") if word else 50
    host = _host(first(labels, "host", "hostname", "nodename", "instance", where=f"{where}.labels"))
    fingerprint = text(alert.get("fingerprint"), where=f"{where}.fingerprint")
    name = text(labels.get("alertname"), where=f"{where}.labels.alertname")
    summary = (text(annotations.get("summary"), where=f"{where}.annotations.summary", limit=2000)
               or text(annotations.get("description"), where=f"{where}.annotations.description", limit=2000))
    try:
        return checked(source, name, severity, host, first(labels, "user", "username", where=f"{where}.labels"),
                       first(labels, "source_ip", "src_ip", where=f"{where}.labels"), summary,
                       raw={"status": status, "fingerprint": fingerprint}, rule_name=name,
                       when=event_time(alert.get("startsAt"), where=f"{where}.startsAt"),
                       resolved=status == "resolved", key=fingerprint)
    except MalformedAlert as exc:
        message = str(exc)
        raise MalformedAlert(message if message.startswith(where) else f"{where}.{message}") from None


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise MalformedAlert(f"version: only Alertmanager webhook version 4 is supported, got {version!r}")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise MalformedAlert("alerts: an Alertmanager webhook carries a list of alerts")
    if len(alerts) > 500:
        raise MalformedAlert("alerts: more than 500 alerts in one request (set max_alerts in webhook_config)")
    raw_common = payload.get("commonLabels")
    common: dict[str, Any] = raw_common if isinstance(raw_common, dict) else {}
    out = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        try:
            out.append(_one(alert, where, common, payload.get("status"), source))
        except MalformedAlert as exc:
            labels = alert.get("labels") if isinstance(alert, dict) else None
            name = labels.get("alertname") if isinstance(labels, dict) else None
            fp = alert.get("fingerprint") if isinstance(alert, dict) else None
            out.append(invalid(source, str(exc), rule_id=name if isinstance(name, str) else None,
                               key=fp if isinstance(fp, str) else None))
    return out
