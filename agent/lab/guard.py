"""Blackhole routes for the lab's ranges in the root namespace: lab traffic can never leave the machine.

Why (LAB.md, "Leaks after teardown"): once a lab's namespaces are gone, a packet from the root namespace to a lab
address follows the default route off the machine — a test or a responder aimed at ``10.77.0.20`` after
``lab down`` would talk to whatever answers that address elsewhere. A ``blackhole`` route for each lab range
drops such packets locally; routes of running labs' links are more specific and still win. ``lab up`` adds them
(idempotent, ``ip route replace``); ``lab down`` removes them only when no other lab on the machine still runs,
because labs with other prefixes share the ranges. Only these routes are ever touched in the root namespace.
"""

from __future__ import annotations

from agent.lab import netns
from agent.lab.topology import LAN_CIDR, OUTSIDE_CIDR, SITES_CIDR

__all__ = ["LAB_RANGES", "add_blackholes", "blackholes", "remove_blackholes_if_last"]

LAB_RANGES = (LAN_CIDR, OUTSIDE_CIDR, SITES_CIDR)
_LAB_MARKER = "-mgmt"  # every lab has a management-host namespace PREFIX-mgmt


def blackholes() -> set[str]:
    """The lab ranges that currently have a blackhole route in the root namespace."""
    out = netns.ip("route", "show", "type", "blackhole", check=False).stdout
    present = {line.split()[1] for line in out.splitlines() if line.startswith("blackhole ")}
    return {r for r in LAB_RANGES if r in present}


def add_blackholes() -> None:
    for cidr in LAB_RANGES:
        netns.ip("route", "replace", "blackhole", cidr)


def remove_blackholes_if_last() -> bool:
    """Remove the routes when no lab namespace remains on the machine; True when they were removed."""
    if any(name.endswith(_LAB_MARKER) for name in netns.list_names()):
        return False
    for cidr in LAB_RANGES:
        netns.ip("route", "del", "blackhole", cidr, check=False)
    return True
