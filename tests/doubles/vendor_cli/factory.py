"""Build a started simulator for a netmiko device_type, plus the device options the connector needs for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import paramiko

from tests.doubles.vendor_cli.server import CliSimulator

__all__ = ["MODELS", "SIM_OPTIONS", "make_simulator"]


def _models() -> dict[str, tuple[Callable[[CliSimulator], Any], Callable[[], Any]]]:
    import importlib

    table = {"cisco_asa": ("cisco", "Asa"), "cisco_ios": ("cisco", "Ios"), "cisco_xe": ("cisco", "Ios"),
             "fortinet": ("fortinet", "Forti"), "paloalto_panos": ("panos", "Panos"),
             "juniper_junos": ("junos", "Junos"), "mikrotik_routeros": ("mikrotik", "Mikrotik")}
    out = {}
    for device_type, (module, stem) in table.items():
        try:
            mod = importlib.import_module(f"tests.doubles.vendor_cli.{module}")
        except ModuleNotFoundError:
            continue
        out[device_type] = (getattr(mod, f"{stem}Model"), getattr(mod, f"{stem}State"))
    return out


MODELS = tuple(sorted(("cisco_asa", "cisco_ios", "cisco_xe", "fortinet", "paloalto_panos", "juniper_junos",
                       "mikrotik_routeros")))

# Target.options the connector needs to drive each simulator's default configuration.
SIM_OPTIONS: dict[str, dict[str, Any]] = {
    "cisco_asa": {"acl": "outside_access_in", "acl_out": "inside_access_in"},
    "cisco_ios": {"acl": "OUTSIDE-IN", "acl_out": "INSIDE-IN"},
    "cisco_xe": {"acl": "OUTSIDE-IN", "acl_out": "INSIDE-IN"},
    "fortinet": {"interface": "port1"},
    "paloalto_panos": {},
    "juniper_junos": {"filter": "EDGE-IN", "filter_out": "EDGE-OUT", "confirm_minutes": 5},
    "mikrotik_routeros": {},
}


def make_simulator(device_type: str, host_key: paramiko.PKey, state: Any = None) -> CliSimulator:
    model, state_cls = _models()[device_type]
    return CliSimulator(model, state if state is not None else state_cls(), host_key).start()
