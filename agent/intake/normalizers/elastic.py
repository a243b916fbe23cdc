"""Elastic Security detection alerts: an alert document, or a Kibana rule action's Webhook connector body.

Alert documents follow Elastic's alert schema (elastic.co/guide/en/security/current/alert-schema.html): nested
or flattened keys (``kibana.alert.rule.name`` as one key, as the ``fields`` API and ``context.alerts`` render
them), and ECS values that may be arrays (``host.name: ["web01"]`` — the first element is taken).

The Webhook connector's body is a template the admin writes; the documented shape is::

    {"rule": {"id": "{{rule.id}}", "name": "{{rule.name}}"}, "alerts": {{{context.alerts}}}}

One normalised alert per document. A document that is not valid is recorded as ``invalid`` beside the valid
ones (one bad document must not lose the batch). Rule id: ``kibana.alert.rule.rule_id`` (the rule's stable id),
else ``kibana.alert.rule.uuid``, legacy ``signal.rule.rule_id``, the connector's ``rule.id``. Rule **name**:
``kibana.alert.rule.name`` (else ``signal.rule.name``, the connector's ``rule.name``), stored and matchable
(``match: {rule_name: ...}``). Host: ``host.name`` (else ``host.hostname``, ``host.ip``). User: ``user.name``,
``user.target.name``. Source IP: ``source.ip``, ``client.ip``. Severity: ``kibana.alert.risk_score`` 0–100,
else the ``kibana.alert.severity`` word. Event time: ``kibana.alert.original_time`` (the source event's
time), else ``@timestamp`` (when the alert was written).
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
    invalid,
    severity_any,
    severity_from_word,
    text,
)

__all__ = ["normalize"]


def _one(doc: Any, where: str, outer_rule: dict[str, Any], source: str) -> NormalizedAlert:
    if not isinstance(doc, dict):
        raise MalformedAlert(f"{where or 'body'}: an alert document is a JSON object")
    rule_id = (first(doc, "kibana.alert.rule.rule_id", "kibana.alert.rule.uuid", "signal.rule.rule_id",
                     "rule.id", where=where) or text(outer_rule.get("id"), where="rule.id"))
    name = (first(doc, "kibana.alert.rule.name", "signal.rule.name", "rule.name", where=where)
            or text(outer_rule.get("name"), where="rule.name"))
    risk = dig(doc, "kibana.alert.risk_score")
    if risk is None:
        risk = dig(doc, "signal.rule.risk_score")
    if isinstance(risk, list):
        risk = risk[0] if risk else None
    if risk is not None:
        severity = severity_any(risk, where=f"{where}.kibana.alert.risk_score".lstrip("."))
    else:
        word = first(doc, "kibana.alert.severity", "signal.rule.severity", where=where)
        severity = severity_from_word(word, where=f"{where}.kibana.alert.severity".lstrip(".")) if word else 50
    host = first(doc, "host.name", "host.hostname", "host.ip", where=where)
    user = first(doc, "user.name", "user.target.name", where=where)
    source_ip = first(doc, "source.ip", "client.ip", where=where)
    when_path = "kibana.alert.original_time" if dig(doc, "kibana.alert.original_time") else "@timestamp"
    when = event_time(dig(doc, when_path), where=f"{where}.{when_path}".lstrip("."))
    uuid = text(dig(doc, "kibana.alert.uuid"), where="kibana.alert.uuid")
    return checked(source, rule_id, severity, host, user, source_ip, name,
                   raw={"risk_score": risk, "id": uuid}, rule_name=name, when=when, key=uuid)


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    batched = "alerts" in payload
    docs = payload["alerts"] if batched else [payload]
    if not isinstance(docs, list):
        raise MalformedAlert("alerts: must be a list of alert documents")
    if len(docs) > 500:
        raise MalformedAlert("alerts: more than 500 alerts in one request")
    raw_rule = payload.get("rule")
    outer_rule: dict[str, Any] = raw_rule if isinstance(raw_rule, dict) and batched else {}
    out = []
    for i, doc in enumerate(docs):
        where = f"alerts[{i}]" if batched else ""
        try:
            out.append(_one(doc, where, outer_rule, source))
        except MalformedAlert as exc:
            message = str(exc) if not where or str(exc).startswith(where) else f"{where}.{exc}"
            if not batched:
                raise MalformedAlert(message) from None
            out.append(invalid(source, message))
    return out
