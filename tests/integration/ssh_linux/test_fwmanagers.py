"""Hosts run by firewalld or ufw (issue 14): their reload must not silently drop the isolation.

The real daemons (Debian's firewalld 1.3.3 and ufw 0.36.2) run inside the lab host: firewalld with a private
D-Bus system bus in the host's own /run, ufw through its own scripts; /etc changes stay in the host's overlay.
Each test ends with :meth:`Lab.reboot`, which kills the daemons and clears the kernel's firewall state. What a
reload does is documented in :mod:`connectors.ssh_linux.fwmanagers` (from their sources); the proof here is the
probe from outside after the reload and verify reading the host.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from agent.lab import Lab
from agent.lab.probe import wait_until
from connectors.errors import Rejected
from tests.integration.ssh_linux.helpers import Agent, nft_ruleset, rows

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(shutil.which("firewalld") is None or shutil.which("ufw") is None,
                                 reason="firewalld and ufw are Debian packages: run scripts/install-system.sh")]


def check(host: str) -> list[tuple[str, str, int]]:
    return [("attacker", host, 8080), ("peer", host, 8080), ("mgmt", host, 22)]


def isolated(host: str) -> dict[str, str]:
    return {f"attacker->{host}:8080": "blocked", f"peer->{host}:8080": "blocked", f"mgmt->{host}:22": "open"}


def start_firewalld(lab: Lab, host: str, backend: str) -> None:
    """A private system bus and firewalld in ``host``'s mount namespace (its /run is the host's own)."""
    script = (f"sed -i 's/^FirewallBackend=.*/FirewallBackend={backend}/' /etc/firewalld/firewalld.conf && "
              "mkdir -p /run/dbus && dbus-daemon --system --fork && firewalld")
    lab.exec(host, ["sh", "-c", script], timeout=30)
    assert wait_until(lambda: lab.exec(host, ["firewall-cmd", "--state"], check=False).stdout.strip() == "running",
                      timeout=30, interval=0.3), lab.exec(host, ["firewall-cmd", "--state"], check=False)


@pytest.fixture
def rebooted(agent: Agent) -> Iterator[Agent]:
    """Whatever a test starts on victim/legacy (daemons, rules) is gone afterwards: the hosts are rebooted."""
    yield agent
    for host in ("victim", "legacy"):
        undo = ("ufw --force disable >/dev/null 2>&1; "
                "sed -i 's/^MANAGE_BUILTINS=.*/MANAGE_BUILTINS=no/' /etc/default/ufw")
        agent.lab.exec(host, ["sh", "-c", undo], check=False)
        agent.lab.reboot(host)


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_firewalld_reload_keeps_the_isolation(rebooted: Agent, backend: str) -> None:
    """On an nft host, with either firewalld backend: its reload and restart leave our table alone."""
    agent, lab = rebooted, rebooted.lab
    start_firewalld(lab, "victim", backend)
    lab.exec("victim", ["firewall-cmd", "--add-port=8080/tcp"])
    assert rows(lab, check("victim"))["attacker->victim:8080"] == "open"
    with agent.open("victim") as s:
        _, result, ver = agent.isolate(s)
        assert ver.in_effect and "firewalld" in result.details["firewall_manager"], result.details
        assert rows(lab, check("victim")) == isolated("victim")
        for reload in ("--reload", "--complete-reload"):
            lab.exec("victim", ["firewall-cmd", reload], timeout=30)
            lab.exec("victim", ["firewall-cmd", "--add-port=8080/tcp"])  # firewalld now accepts 8080 again
            # the reload really rebuilt firewalld's own rules
            assert ("table inet firewalld" if backend == "nftables" else "IN_public") in nft_ruleset(lab, "victim")
            assert rows(lab, check("victim")) == isolated("victim"), f"firewall-cmd {reload} dropped the isolation"
        assert rows(lab, check("victim")) == isolated("victim")
        assert agent.conn.verify(s, "isolate", {}).in_effect
        lab.exec("victim", ["sh", "-c", "kill $(cat /run/firewalld.pid); sleep 0.5; firewalld"], timeout=30)
        assert wait_until(lambda: lab.exec("victim", ["firewall-cmd", "--state"], check=False).stdout.strip()
                          == "running", timeout=30, interval=0.3)
        assert rows(lab, check("victim")) == isolated("victim"), "a firewalld restart dropped the isolation"
        assert agent.conn.verify(s, "isolate", {}).in_effect


def test_ufw_reload_keeps_the_isolation(rebooted: Agent) -> None:
    agent, lab = rebooted, rebooted.lab
    for host in ("victim", "legacy"):
        lab.exec(host, ["sh", "-c", "ufw allow 22/tcp && ufw allow 8080/tcp && ufw --force enable"], timeout=30)
        assert rows(lab, check(host))[f"attacker->{host}:8080"] == "open"
        with agent.open(host) as s:
            _, result, ver = agent.isolate(s)
            assert ver.in_effect and "ufw" in result.details["firewall_manager"], result.details
            lab.exec(host, ["ufw", "reload"], timeout=30)
            assert rows(lab, check(host)) == isolated(host), f"ufw reload dropped the isolation of {host}"
            assert agent.conn.verify(s, "isolate", {}).in_effect


def test_iptables_host_whose_manager_flushes_everything_is_refused(rebooted: Agent) -> None:
    """legacy has no nft: the agent's iptables chains would not survive these managers' reloads."""
    agent, lab = rebooted, rebooted.lab
    enable = ("sed -i 's/^MANAGE_BUILTINS=.*/MANAGE_BUILTINS=yes/' /etc/default/ufw && "
              "ufw allow 22/tcp && ufw allow 8080/tcp && ufw --force enable")
    lab.exec("legacy", ["sh", "-c", enable], timeout=30)
    with agent.open("legacy") as s, pytest.raises(Rejected, match="MANAGE_BUILTINS=yes"):
        agent.isolate(s)
    assert rows(lab, check("legacy"))["attacker->legacy:8080"] == "open"  # nothing was sent
    lab.exec("legacy", ["sh", "-c", "ufw --force disable"])
    start_firewalld(lab, "legacy", "iptables")
    with agent.open("legacy") as s, pytest.raises(Rejected, match="FirewallBackend=iptables"):
        agent.isolate(s)
