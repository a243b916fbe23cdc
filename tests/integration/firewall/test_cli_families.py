"""An IPv6 block on every edge when one edge is IPv4-only: block where possible, report where not (finding 9)."""

from __future__ import annotations

import json
from pathlib import Path

import paramiko

from tests.integration.firewall.cli_env import SimCli

V6 = "2a00:1450:4001::/48"


def test_ipv6_block_is_partial_not_refused(sim_factory, tmp_path: Path, host_key: paramiko.PKey) -> None:
    asa, ios = sim_factory("cisco_asa"), sim_factory("cisco_ios")
    cli = SimCli(tmp_path, host_key, {"edge-asa": ("cisco_asa", asa), "edge-ios": ("cisco_ios", ios)})
    res = cli("block-ip", V6, "--reason", "c2", "--yes", "--json")
    assert res.returncode == 4, res.stderr + res.stdout
    out = json.loads(res.stdout)
    assert out["status"] == "partial"
    assert [s["target"] for s in out["skipped"]] == ["edge-ios"] and "IPv6" in out["skipped"][0]["reason"]
    assert asa.state.blocklist == {V6} and ios.state.blocklist == set()
    text = cli("block-ip", "2a00:1450:4002::/48", "--reason", "c2", "--yes")
    assert text.returncode == 4 and "edge-ios: NOT done" in text.stdout, text.stdout + text.stderr


def test_ipv6_only_on_ipv4_only_devices_is_refused(sim_factory, tmp_path: Path, host_key: paramiko.PKey) -> None:
    ios = sim_factory("cisco_ios")
    cli = SimCli(tmp_path, host_key, {"edge-ios": ("cisco_ios", ios)})
    res = cli("block-ip", V6, "--yes")
    assert res.returncode == 2 and "IPv6" in res.stderr, res.stderr + res.stdout
    assert ios.connections == 0
