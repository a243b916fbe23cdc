"""`agent lab up` blackholes the lab's ranges in the root namespace, so lab traffic can never leave the machine.

LAB.md ("Leaks after teardown"): without these routes a packet from the root namespace to a lab address follows
the default route off the machine once the lab's namespaces are gone.
"""

from __future__ import annotations

import pytest

from agent.lab import Lab, netns
from agent.lab.guard import LAB_RANGES, blackholes

pytestmark = pytest.mark.root


def _route_to(address: str) -> str:
    return netns.ip("route", "get", address, check=False).stdout + netns.ip("route", "get", address,
                                                                             check=False).stderr


def test_lab_ranges_are_blackholed_while_a_lab_runs(lab: Lab) -> None:
    """Every lab range has a blackhole route; the root namespace would drop a packet to a lab host locally."""
    assert blackholes() == set(LAB_RANGES)
    for address in ("10.77.0.20", "10.77.1.130"):
        route = _route_to(address)
        assert "blackhole" in route or "No route" in route or "Invalid argument" in route, route
        assert "via" not in route, route  # never the default route off the machine


def test_another_lab_going_down_keeps_them(lab: Lab, spare_lab: Lab) -> None:
    """A second lab's `down` leaves the routes while the first still runs (the ranges are shared)."""
    spare_lab.up(rebuild=True)
    spare_lab.down()
    assert lab.is_up()
    assert blackholes() == set(LAB_RANGES)
