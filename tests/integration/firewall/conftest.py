"""Fixtures for the firewall connector against the SSH CLI simulators (netmiko's real drivers, loopback only).

``host_key``/``known_hosts``: one ECDSA host key per test session, pinned by port in a known_hosts file.
``sim_factory(device_type)``: a started simulator with fresh state (stopped at teardown).
``device(sim)``: the Target, Credentials and ConnectorContext that reach it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest

from connectors.firewall import FirewallConnector
from connectors.types import ConnectorContext, Credentials, Secret, Target
from tests.doubles.vendor_cli import (
    SIM_OPTIONS,
    CliSimulator,
    make_simulator,
    new_host_key,
    write_known_hosts,
)

SIM_TYPES = ["cisco_asa", "cisco_ios", "cisco_xe", "fortinet", "paloalto_panos", "juniper_junos",
             "mikrotik_routeros"]
# lines that enter configuration mode / change configuration, per vendor (netmiko's own session preparation —
# ASA ``terminal width 511`` in config mode, FortiOS ``config system console`` — is not the connector's doing)
CONFIG_ENTRY = {"cisco_asa": r"^configure terminal$", "cisco_ios": r"^configure terminal$",
                "cisco_xe": r"^configure terminal$", "paloalto_panos": r"^configure$",
                "juniper_junos": r"^configure private$", "fortinet": r"^config firewall ",
                "mikrotik_routeros": r"^/ip firewall \S+ (add|remove|move) "}
PREP_ENTRIES = {"cisco_asa": 1}   # per session
# how each dialect persists: number of save/commit operations after one change
SAVES_PER_CHANGE = {"cisco_asa": 1, "cisco_ios": 1, "cisco_xe": 1, "paloalto_panos": 1, "juniper_junos": 1,
                    "fortinet": 0, "mikrotik_routeros": 0}


@dataclass
class Device:
    """Everything a test needs to act on one simulator through the connector."""

    sim: CliSimulator
    device_type: str
    target: Target
    creds: Credentials
    ctx: ConnectorContext
    conn: FirewallConnector

    def session(self) -> Any:
        return self.conn.open(self.target, self.creds, self.ctx)

    def run(self, action: str, args: dict[str, Any]) -> tuple[Any, Any, Any]:
        """What the engine does: validate, open, snapshot, apply, verify (one session)."""
        self.conn.validate(self.target, action, args)
        with self.session() as s:
            snap = self.conn.snapshot(s, action, args)
            result = self.conn.apply(s, action, args, snap)
            check = self.conn.verify(s, action, args)
        return snap, result, check

    def undo(self, action: str, args: dict[str, Any], snap: Any) -> Any:
        with self.session() as s:
            result = self.conn.undo(s, action, args, snap)
            check = self.conn.verify(s, action, args)
        return result, check


@pytest.fixture(scope="session")
def host_key() -> paramiko.PKey:
    return new_host_key()


@pytest.fixture
def sim_factory(host_key: paramiko.PKey) -> Iterator[Callable[..., CliSimulator]]:
    started: list[CliSimulator] = []

    def make(device_type: str, state: Any = None) -> CliSimulator:
        sim = make_simulator(device_type, host_key, state)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


def make_device(sim: CliSimulator, device_type: str, tmp_path: Path, host_key: paramiko.PKey,
                timeout: float = 10.0, **options: Any) -> Device:
    kh = write_known_hosts(tmp_path / f"known_hosts_{sim.port}", [(sim.port, host_key)])
    target = Target(f"sim-{device_type}", "device", "127.0.0.1", "firewall", port=sim.port,
                    options={k: v for k, v in {"device_type": device_type, **SIM_OPTIONS[device_type],
                                               **options}.items() if v is not None})
    creds = Credentials("admin", Secret("s3cret-pw"), extra={"secret": Secret("en-s3cret")})
    ctx = ConnectorContext(known_hosts=str(kh), connect_timeout=5, command_timeout=timeout)
    return Device(sim, device_type, target, creds, ctx, FirewallConnector())


@pytest.fixture(params=SIM_TYPES)
def device(request: pytest.FixtureRequest, sim_factory: Callable[..., CliSimulator], tmp_path: Path,
           host_key: paramiko.PKey) -> Device:
    """A fresh simulator of each vendor (the contract suite runs once per device_type)."""
    sim = sim_factory(request.param)
    return make_device(sim, request.param, tmp_path, host_key)
