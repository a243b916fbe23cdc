"""Every firewall dialect against the conformance checks (tests/conformance/firewall_suite.py): each vendor
simulator and the lab's real Linux router."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from connectors.types import ConnectorContext, Credentials, Target
from tests.conformance.firewall_suite import CHECKS, Harness
from tests.integration.firewall.conftest import SIM_TYPES, make_device

ADDRS = ["45.33.7.9", "45.34.0.0/24", "45.35.1.1"]


def _sim_harness(device_type: str, tmp_path: Path, key: paramiko.PKey) -> Iterator[Harness]:
    from tests.doubles.vendor_cli import make_simulator
    sim = make_simulator(device_type, key)
    try:
        dev = make_device(sim, device_type, tmp_path, key)
        yield Harness(device_type, dev.target, dev.creds, dev.ctx, list(ADDRS), conn=dev.conn)
    finally:
        sim.stop()


def _lab_harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    lab = request.getfixturevalue("clean_lab")   # the real router in network namespaces (root)
    target = Target("fw", "device", lab.hosts["fw"].address, "firewall", port=22, options={"device_type": "linux"})
    creds = Credentials("root", private_key_path=str(lab.agent_key))
    ctx = ConnectorContext(known_hosts=str(lab.known_hosts), connect_timeout=5, command_timeout=10)
    yield Harness("linux-lab-router", target, creds, ctx, ["10.77.1.130", "45.34.0.0/24", "45.35.1.1"],
                  around=lambda: lab.enter("mgmt"))


@pytest.fixture(params=[*SIM_TYPES, "linux-lab-router"])
def harness(request: pytest.FixtureRequest, tmp_path: Path, host_key: paramiko.PKey) -> Iterator[Harness]:
    if request.param == "linux-lab-router":
        yield from _lab_harness(request)
    else:
        yield from _sim_harness(request.param, tmp_path, host_key)


@pytest.mark.parametrize("check", list(CHECKS))
def test_conformance(harness: Harness, check: str) -> None:
    CHECKS[check](harness)
