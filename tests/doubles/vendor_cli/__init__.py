"""SSH CLI simulators of vendor firewalls/routers, driven by netmiko's real device_type drivers in tests.

``make_simulator(device_type, host_key)`` returns a started :class:`CliSimulator` with that vendor's model and a
fresh state; the test reads ``sim.state`` and the counters and injects faults with ``sim.inject``.
"""

from __future__ import annotations

from tests.doubles.vendor_cli.factory import SIM_OPTIONS, make_simulator
from tests.doubles.vendor_cli.server import CliSimulator, Fault, new_host_key, write_known_hosts

__all__ = ["SIM_OPTIONS", "CliSimulator", "Fault", "make_simulator", "new_host_key", "write_known_hosts"]
