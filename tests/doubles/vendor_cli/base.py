"""Shared pieces of the vendor CLI models: the model interface and address canonicalisation."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

__all__ = ["PLACEHOLDER", "Model", "StateBase", "canon"]

PLACEHOLDER = "255.255.255.255"


def canon(text: str, mask: str | None = None) -> str:
    """``1.2.3.4`` / ``10.0.0.0/24`` (from ``A MASK`` or ``A/len``); raises ValueError on garbage."""
    net = ipaddress.ip_network(f"{text}/{mask}" if mask else text, strict=True)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


class StateBase:
    """Counters every simulator exposes; subclasses add running/saved configuration."""

    def __init__(self) -> None:
        self.saves = 0
        self.config_entries = 0
        self.saved: Any = None

    def snapshot(self, obj: Any) -> Any:
        return copy.deepcopy(obj)


class Model:
    """One interactive session on a device: prompt, echo flag, line handler, the vendor's error text."""

    echo = True

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.state = sim.state
        self.closed = False

    def greeting(self) -> str:
        return ""

    def prompt(self) -> str:
        raise AssertionError("subclass must define prompt()")

    def handle(self, line: str) -> str:
        raise AssertionError("subclass must define handle()")

    def reject(self, line: str) -> str:
        raise AssertionError("subclass must define reject()")
