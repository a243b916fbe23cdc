"""Dry run == what is sent, per dialect, on a device without our objects and on one that already has them
(issue 17, finding 7). The preview is computed from the read-only resolve step's facts (docs/architecture.md,
decision 1) and compared with the change lines the connector then sends and the simulator receives — including
the state-dependent ones: Junos ``insert … before term``, FortiGate ``edit <id>`` + ``move … before …``,
MikroTik ``place-before=0``, IOS interface-mode ACL creation."""

from __future__ import annotations

import re

import pytest

from connectors.firewall import dialect_for
from tests.integration.firewall.conftest import Device

A, NET, B = "45.33.7.9", "45.34.0.0/24", "45.35.1.1"
# netmiko's own mode changes around the change lines (not the dialect's lines, not configuration)
MODE = re.compile(r"^(configure terminal|configure private|configure|end|exit|exit configuration-mode|config "
                  r"system console|set output standard|)$")
STATE_DEPENDENT = {"juniper_junos": "insert firewall family inet filter EDGE-IN term IR-BLOCK before term",
                   "fortinet": "move ", "mikrotik_routeros": "place-before=0"}


@pytest.mark.parametrize("populated", [False, True], ids=["no-IR-objects", "populated"])
def test_preview_equals_sent(device: Device, populated: bool) -> None:
    conn, args = device.conn, {"addresses": [A, NET, B]}
    if populated:
        device.run("block_ip", {"addresses": [B]})
    conn.validate(device.target, "block_ip", args)
    with device.session() as s:
        facts = conn.resolve(s, "block_ip", args)
        preview = conn.preview(device.target, "block_ip", args, device.ctx, facts=facts)
        mark, reads_before = len(device.sim.lines), len(s.dialect.reads)
        snap = conn.snapshot(s, "block_ip", args)
        result = conn.apply(s, "block_ip", args, snap)
        reads = set(s.dialect.reads[reads_before:])
        shown = {ln.strip() for ln in preview}
        # what reached the device besides the dialect's reads and netmiko's own mode changes
        received = [ln.strip() for ln in device.sim.lines[mark:]
                    if ln.strip() in shown or (ln not in reads and not MODE.match(ln.strip()))]
    sent = result.details["applied_lines"] + result.details["persist"] + result.details["sessions"]
    assert preview == sent, (preview, sent)
    assert received == [ln.strip() for ln in preview], (received, preview)
    if not populated and device.device_type in STATE_DEPENDENT:
        assert any(STATE_DEPENDENT[device.device_type] in ln for ln in preview), preview


def test_resolve_is_read_only(device: Device) -> None:
    """The resolve step sends show commands only: the device's configuration is unchanged."""
    def config() -> str:  # netmiko's ASA session preparation enters config mode for "terminal width": not ours
        return repr({k: v for k, v in device.sim.state.__dict__.items() if k != "config_entries"})

    before = config()
    with device.session() as s:
        device.conn.resolve(s, "block_ip", {"addresses": [A]})
        assert s.dialect.sent == s.dialect.reads
    assert config() == before


def test_offline_preview_marks_state_dependent_lines(device: Device) -> None:
    """--offline: no device read; state-dependent lines carry their condition, nothing pretends to be exact."""
    lines = device.conn.preview(device.target, "block_ip", {"addresses": [A]}, device.ctx)
    assert lines[0].startswith("(offline")
    assert all(ln.startswith(("if ", "after a change: ", "(offline")) for ln in lines), lines
    if device.device_type in STATE_DEPENDENT:
        assert any(STATE_DEPENDENT[device.device_type] in ln for ln in lines), lines
    assert dialect_for(device.target)
