"""Elastic Security detection alerts, as posted by a Kibana rule action through the Webhook connector.

The connector body is a template the admin writes; the documented shape is::

    {"rule": {"id": "{{rule.id}}", "name": "{{rule.name}}"}, "alerts": {{{context.alerts}}}}

``context.alerts`` renders the alert documents; each carries (flattened or nested) ``kibana.alert.rule.rule_id``,
``kibana.alert.rule.name``, ``kibana.alert.risk_score`` (0–100), ``kibana.alert.severity``, ``host.name``,
``user.name`` and ``source.ip``. A single alert document posted on its own is accepted too.
One normalised alert per document. Host: ``host.name`` (else ``host.hostname``, ``host.ip``).
"""

from __future__ import annotations

from typing import Any

from agent.intake.model import (
    MalformedAlert,
    NormalizedAlert,
    checked,
    dig,
    first,
    severity_any,
    severity_from_word,
    text,
)

__all__ = ["normalize"]


def normalize(payload: dict[str, Any], source: str) -> list[NormalizedAlert]:
    docs = payload.get("alerts", [payload]) if "alerts" in payload else [payload]
    if not isinstance(docs, list):
        raise MalformedAlert("alerts: must be a list of alert documents")
    if len(docs) > 500:
        raise MalformedAlert("alerts: more than 500 alerts in one request")
    raw_rule = payload.get("rule")
    outer_rule: dict[str, Any] = raw_rule if isinstance(raw_rule, dict) else {}
    out = []
    for i, doc in enumerate(docs):
        where = f"alerts[{i}]" if "alerts" in payload else ""
        if not isinstance(doc, dict):
            raise MalformedAlert(f"{where or 'body'}: an alert document is a JSON object")
        rule_id = (first(doc, "kibana.alert.rule.rule_id", "kibana.alert.rule.uuid", "signal.rule.rule_id",
                         "rule.id", where=where) or text(outer_rule.get("id"), where="rule.id"))
        title = (first(doc, "kibana.alert.rule.name", "signal.rule.name", "rule.name", where=where)
                 or text(outer_rule.get("name"), where="rule.name"))
        risk = dig(doc, "kibana.alert.risk_score")
        if risk is None:
            risk = dig(doc, "signal.rule.risk_score")
        if risk is not None:
            severity = severity_any(risk, where=f"{where}.kibana.alert.risk_score")
        else:
            word = first(doc, "kibana.alert.severity", "signal.rule.severity", where=where)
            severity = severity_from_word(word, where=f"{where}.kibana.alert.severity") if word else 50
        host = first(doc, "host.name", "host.hostname", "host.ip", where=where)
        user = first(doc, "user.name", "user.target.name", where=where)
        source_ip = first(doc, "source.ip", "client.ip", where=where)
        try:
            out.append(checked(source, rule_id, severity, host, user, source_ip, title,
                               raw={"risk_score": risk, "id": text(dig(doc, "kibana.alert.uuid"),
                                                                   where="kibana.alert.uuid")}))
        except MalformedAlert as exc:
            raise MalformedAlert(f"{where}.{exc}" if where else str(exc)) from None
    return out
