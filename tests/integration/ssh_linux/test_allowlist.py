"""Allow-lists during isolation (issue 14; schema: docs/architecture.md ``allow:``): the flows the inventory keeps
open stay open — exactly those, in exactly their direction — on nft and iptables hosts, and the plan says so."""

from __future__ import annotations

from typing import Any

import pytest

from agent.lab import Lab
from connectors.errors import InvalidInput
from connectors.ssh_linux import SshSession
from connectors.types import AllowRule, Target
from tests.integration.ssh_linux.helpers import Agent, rows

pytestmark = pytest.mark.root
KEEP = (AllowRule(source="tag lab", to=("10.77.0.30",), protocol="tcp", ports=(8080,), direction="out",
                  note="log forwarder"),
        AllowRule(source="site hq", to=("10.77.0.99", "fd00::99"), protocol="udp", ports=(53, 853)),
        AllowRule(source="defaults ssh_linux", service="dhcp"))


def open_with_allow(agent: Agent, host: str, allow: tuple[AllowRule, ...]) -> SshSession:
    target = Target(host, "host", agent.lab.hosts[host].address, "ssh_linux", allow=allow)
    with agent.lab.enter("mgmt"):
        return agent.conn.open(target, agent.creds, agent.ctx)


def open_rows(lab: Lab, host: str) -> set[str]:
    matrix = [("mgmt", host, 22), (host, "peer", 8080), (host, "attacker", 8080), ("peer", host, 8080),
              ("attacker", host, 8080)]
    return {k for k, v in rows(lab, matrix).items() if v == "open"}


@pytest.mark.parametrize("host", ["victim", "legacy"])
def test_kept_flow_stays_open_and_only_it(agent: Agent, host: str) -> None:
    """host -> peer:8080 (the allow-list entry, outbound) stays open; the reverse direction and every other flow
    are blocked; the resolver (two ports, both families) and DHCP rules read back exactly as verify expects them;
    release restores everything."""
    lab = agent.lab
    with open_with_allow(agent, host, KEEP) as s:
        snap, result, check = agent.isolate(s)
        assert result.changed and check.in_effect, (result, check)
        assert open_rows(lab, host) == {f"mgmt->{host}:22", f"{host}->peer:8080"}
        agent.release(s, snap)
    assert len(open_rows(lab, host)) == 5


def test_plan_names_the_kept_flows(agent: Agent) -> None:
    """The plan's summary says what stays open and who declared it; the preview carries the exact rules."""
    target = Target("victim", "host", "10.77.0.20", "ssh_linux", allow=KEEP)
    summary = " ".join(agent.conn.summarize(target, "isolate", {}, agent.ctx))
    assert "also keep out tcp 8080 with 10.77.0.30 (tag lab: log forwarder)" in summary
    preview = "\n".join(agent.conn.preview(target, "isolate", {}, agent.ctx))
    assert "ip daddr 10.77.0.30 tcp dport 8080 accept" in preview and "ip saddr 10.77.0.30 tcp sport 8080" in preview


@pytest.mark.parametrize("rule", [AllowRule(source="host", service="dns"),
                                  AllowRule(source="site x", names=("edr.example",), resolve="target"),
                                  AllowRule(source="host", to=("0.0.0.0/0",))])
def test_entries_it_cannot_express_are_refused_before_connecting(agent: Agent, rule: Any) -> None:
    """service: dns, names resolved on the target and an everything-network are refused with the entry's source."""
    target = Target("victim", "host", "10.77.0.20", "ssh_linux", allow=(rule,))
    with pytest.raises(InvalidInput, match=rule.source):
        agent.conn.validate(target, "isolate", {})
