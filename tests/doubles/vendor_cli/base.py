"""Shared pieces of the vendor CLI models: the model interface and address canonicalisation."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

__all__ = ["PLACEHOLDER", "Flows", "Model", "StateBase", "canon"]

PLACEHOLDER = "255.255.255.255"


def canon(text: str, mask: str | None = None) -> str:
    """``1.2.3.4`` / ``10.0.0.0/24`` (from ``A MASK`` or ``A/len``); raises ValueError on garbage."""
    net = ipaddress.ip_network(f"{text}/{mask}" if mask else text, strict=True)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


class Flows:
    """The device's session/connection table: established flows (proto, src, sport, dst, dport).

    Why it exists: on stateful firewalls a new deny rule is only checked when a connection is set up; flows
    established before it live on until cleared (Cisco ASA command reference "clear conn"; FortiOS
    "diagnose sys session clear"; PAN-OS "clear session"; Junos "clear security flow session"). Tests seed flows
    (an attacker's open C2 channel) and read what is left after the connector's block.
    """

    def __init__(self) -> None:
        self.flows: list[tuple[str, str, int, str, int]] = []

    def add(self, src: str, dst: str, sport: int = 51000, dport: int = 443, proto: str = "TCP") -> None:
        self.flows.append((proto, src, sport, dst, dport))

    @staticmethod
    def _in(addr: str, lo: str, hi: str | None = None) -> bool:
        a = ipaddress.ip_address(addr)
        if hi is not None:
            return ipaddress.ip_address(lo) <= a <= ipaddress.ip_address(hi)
        return a in ipaddress.ip_network(lo, strict=False)

    def matching(self, src: tuple[str, str | None] | None = None, dst: tuple[str, str | None] | None = None,
                 either: tuple[str, str | None] | None = None) -> list[tuple[str, str, int, str, int]]:
        out = []
        for flow in self.flows:
            _, s, _, d, _ = flow
            if src and not self._in(s, *src):
                continue
            if dst and not self._in(d, *dst):
                continue
            if either and not (self._in(s, *either) or self._in(d, *either)):
                continue
            out.append(flow)
        return out

    def remove(self, flows: list[tuple[str, str, int, str, int]]) -> int:
        self.flows = [f for f in self.flows if f not in flows]
        return len(flows)

    def involving(self, addr: str) -> list[tuple[str, str, int, str, int]]:
        return self.matching(either=(addr, None))


class StateBase:
    """Counters every simulator exposes; subclasses add running/saved configuration."""

    def __init__(self) -> None:
        self.saves = 0
        self.config_entries = 0
        self.saved: Any = None
        self.sessions = Flows()
        # the device's own interface addresses (a block of one of them cuts the device off itself)
        self.addresses: dict[str, str] = {"outside": "198.51.100.1/24", "inside": "10.1.0.1/24"}

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
