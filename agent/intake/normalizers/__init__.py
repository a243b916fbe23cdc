"""One normaliser per alert source format: ``normalize(payload) -> list[NormalizedAlert]``.

A normaliser is a pure function of the parsed JSON body. It returns one alert per event in the payload
(Alertmanager and Elastic batch several), raises :class:`~agent.intake.model.MalformedAlert` naming the field
when the payload is not a valid alert of its format (the webhook answers 400), and never touches the network,
the store or the inventory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.intake.model import MalformedAlert, NormalizedAlert
from agent.intake.normalizers import alertmanager, elastic, generic, splunk, wazuh

__all__ = ["NORMALIZERS", "normalize"]

NORMALIZERS: dict[str, Callable[[Any, str], list[NormalizedAlert]]] = {
    "wazuh": wazuh.normalize,
    "elastic": elastic.normalize,
    "splunk": splunk.normalize,
    "alertmanager": alertmanager.normalize,
    "generic": generic.normalize,
}


def normalize(fmt: str, payload: Any, source: str) -> list[NormalizedAlert]:
    """Normalise ``payload`` in format ``fmt``; the alerts carry ``source`` (the configured source name)."""
    if not isinstance(payload, dict):
        raise MalformedAlert(f"body: a {fmt} alert is a JSON object, got {type(payload).__name__}")
    alerts = NORMALIZERS[fmt](payload, source)
    if not alerts:
        raise MalformedAlert("body: the payload contains no alert")
    return alerts
