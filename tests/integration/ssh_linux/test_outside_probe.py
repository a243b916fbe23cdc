"""Proof from outside after verify (issue 14): a second vantage point (``options.probe_from``) tries the host's
listening ports; the outcome is in the verification's ``observed`` (what the engine journals)."""

from __future__ import annotations

import pytest

from connectors.types import AllowRule, Target
from tests.integration.ssh_linux.helpers import Agent

pytestmark = pytest.mark.root


def test_verify_probes_from_a_peer_and_records_it(agent: Agent) -> None:
    peer = agent.lab.hosts["peer"].address
    with agent.open("victim", options={"probe_from": peer}) as s:
        before = agent.conn.verify(s, "isolate", {})
        assert "outside_probe" not in before.observed  # not isolated: nothing to prove
        _, _, ver = agent.isolate(s)
    assert ver.in_effect, ver
    seen = ver.observed["outside_probe"]
    assert seen["from"] == peer and seen["ports"] == {"8080": "blocked", "22": "blocked"}, seen
    assert seen["management_path"].startswith("ok") and "tcp/8080,22 time out" in ver.summary


def test_a_port_reachable_from_outside_fails_the_verification(agent: Agent) -> None:
    """An allow-list entry keeps 8080 open to the peer: the rules read back as expected, but the probe from that
    peer reaches the port, so the verification says the host is not isolated as seen from there."""
    lab = agent.lab
    peer = lab.hosts["peer"].address
    target = Target("victim", "host", lab.hosts["victim"].address, "ssh_linux", options={"probe_from": peer},
                    allow=(AllowRule(to=(peer,), protocol="tcp", ports=(8080,), direction="in", source="test"),))
    with lab.enter("mgmt"):
        s = agent.conn.open(target, agent.creds, agent.ctx)
    with s:
        _, _, ver = agent.isolate(s)
    assert not ver.in_effect and "NOT isolated as seen from" in ver.summary, ver
    assert ver.observed["outside_probe"]["ports"] == {"8080": "open", "22": "blocked"}


def test_probe_from_must_be_an_address(agent: Agent) -> None:
    from connectors.errors import InvalidInput
    target = agent.target("victim", options={"probe_from": "peer; id"})
    with pytest.raises(InvalidInput, match="probe_from"):
        agent.conn.validate(target, "isolate", {})


def test_an_unreachable_vantage_point_is_reported_not_taken_for_drift(agent: Agent) -> None:
    """The probe could not run (nothing answers at probe_from): that says nothing about the host, so verify still
    reads the rules as in effect and says the outside proof is missing."""
    with agent.open("victim", options={"probe_from": "10.77.0.99"}) as s:
        _, _, ver = agent.isolate(s)
    assert ver.in_effect and "outside probe failed" in ver.summary, ver
    assert "cannot reach the vantage host 10.77.0.99" in ver.observed["outside_probe"]["error"]
    assert ver.observed["outside_probe"]["ports"] == {}
