"""One normaliser per alert source format: ``normalize(payload) -> list[NormalizedAlert]``.

A normaliser is a pure function of the parsed body. It returns one alert per event in the payload
(Alertmanager, Elastic and Suricata batch several; an element of a batch that is not valid comes back as an
``invalid`` alert, recorded beside the others), raises :class:`~agent.intake.model.MalformedAlert` naming the
field when the payload as a whole is not of its format (the webhook answers 400), and never touches the
network, the store or the inventory. Suricata's body is JSON lines, parsed by
:func:`~agent.intake.normalizers.suricata.parse_lines`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.intake.model import MalformedAlert, NormalizedAlert
from agent.intake.normalizers import alertmanager, elastic, generic, splunk, suricata, wazuh

__all__ = ["LINE_FORMATS", "NORMALIZERS", "normalize"]

NORMALIZERS: dict[str, Callable[[Any, str], list[NormalizedAlert]]] = {
    "wazuh": wazuh.normalize,
    "elastic": elastic.normalize,
    "splunk": splunk.normalize,
    "alertmanager": alertmanager.normalize,
    "generic": generic.normalize,
    "suricata": suricata.normalize,
}
#: formats whose body is several JSON documents (one per line), not one
LINE_FORMATS = {"suricata"}


def normalize(fmt: str, payload: Any, source: str) -> list[NormalizedAlert]:
    """Normalise ``payload`` in format ``fmt``; the alerts carry ``source`` (the configured source name)."""
    if fmt in LINE_FORMATS:
        return NORMALIZERS[fmt](payload, source)  # a batch of only non-alert events is empty, not an error
    if not isinstance(payload, dict):
        raise MalformedAlert(f"body: a {fmt} alert is a JSON object, got {type(payload).__name__}")
    alerts = NORMALIZERS[fmt](payload, source)
    if not alerts:
        raise MalformedAlert("body: the payload contains no alert")
    return alerts
