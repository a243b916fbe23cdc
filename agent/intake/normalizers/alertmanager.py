"""Prometheus Alertmanager: the webhook receiver payload, version 4.

Example (abridged)::

    {"version": "4", "status": "firing", "receiver": "containment", "groupKey": "{}:{alertname=\"X\"}",
     "commonLabels": {"alertname": "CryptominerDetected"}, "externalURL": "http://am:9093",
     "alerts": [{"status": "firing", "labels": {"alertname": "CryptominerDetected", "instance": "victim:9100",
                                                 "severity": "critical"},
                 "annotations": {"summary": "..."}, "startsAt": "...", "fingerprint": "c2d1..."}]}

One normalised alert per element of ``alerts``; group labels fill in labels an alert lacks. Rule id:
``labels.alertname``. Host: ``labels.host``, ``labels.hostname``, ``labels.nodename``, ``labels.instance``
(port stripped). User: ``labels.user``. Source IP: ``labels.source_ip``, ``labels.src_ip``. Severity:
``labels.severity`` word. ``resolved`` alerts are recorded but never acted on.
"""

from __future__ import annotations

from typing import Any

from agent.intake.model import MalformedAlert, NormalizedAlert, checked, first, severity_from_word, text

__all__ = ["normalize"]


def _host(value: str | None) -> str | None:
    if value and value.count(":") == 1:  # host:port (IPv6 instances are written [addr]:port)
        return value.split(":")[0]
    if value and value.startswith("[") and "]:" in value:
        return value[1:value.index("]")]
    return value


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise MalformedAlert(f"version: only Alertmanager webhook version 4 is supported, got {version!r}")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise MalformedAlert("alerts: an Alertmanager webhook carries a list of alerts")
    if len(alerts) > 500:
        raise MalformedAlert("alerts: more than 500 alerts in one request")
    raw_common = payload.get("commonLabels")
    common: dict[str, Any] = raw_common if isinstance(raw_common, dict) else {}
    out = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(alert, dict) or not isinstance(alert.get("labels", {}), dict):
            raise MalformedAlert(f"{where}: an alert is an object with a 'labels' object")
        labels = {**common, **alert.get("labels", {})}
        status = text(alert.get("status") or payload.get("status"), where=f"{where}.status") or "firing"
        if status not in ("firing", "resolved"):
            raise MalformedAlert(f"{where}.status: {status!r} is not firing or resolved")
        raw_ann = alert.get("annotations")
        annotations: dict[str, Any] = raw_ann if isinstance(raw_ann, dict) else {}
        word = text(labels.get("severity"), where=f"{where}.labels.severity")
        severity = severity_from_word(word, where=f"{where}.labels.severity") if word else 50
        host = _host(first(labels, "host", "hostname", "nodename", "instance", where=f"{where}.labels"))
        try:
            out.append(checked(
                source, text(labels.get("alertname"), where=f"{where}.labels.alertname"), severity, host,
                first(labels, "user", where=f"{where}.labels"),
                first(labels, "source_ip", "src_ip", where=f"{where}.labels"),
                text(annotations.get("summary"), where=f"{where}.annotations.summary", limit=2000),
                raw={"status": status, "fingerprint": text(alert.get("fingerprint"), where="fingerprint")},
                actionable=status == "firing"))
        except MalformedAlert as exc:
            raise MalformedAlert(f"{where}.{exc}") from None
    return out
