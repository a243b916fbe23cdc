"""iptables hosts as they are found (issue 14 findings 7 and 8): one without ip6tables must not be left open over
IPv6, and release must restore the ruleset exactly or say what differs. Proven on the lab's ``legacy`` host (no
nft) with the host's own tools and real IPv6 traffic (link-local ping from peer)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.lab import Lab
from agent.lab.probe import wait_until
from tests.integration.ssh_linux.helpers import LEGACY_ROWS, Agent, rows

pytestmark = pytest.mark.root
# In legacy's mount namespace /usr/sbin is a tmpfs of symlinks into /run/lab-sbin (agent/lab/sshd.py): removing the
# ip6tables links hides the tools from every shell there, putting them back restores the host.
HIDE_IP6 = "rm -f /usr/sbin/ip6tables*"
SHOW_IP6 = "for f in /run/lab-sbin/ip6tables*; do ln -sf \"$f\" /usr/sbin/; done"


@pytest.fixture
def without_ip6tables(agent: Agent) -> Iterator[Agent]:
    agent.lab.exec("legacy", ["sh", "-c", HIDE_IP6])
    try:
        assert agent.lab.exec("legacy", ["sh", "-c", "command -v ip6tables"], check=False).returncode != 0
        yield agent
    finally:
        agent.lab.exec("legacy", ["sh", "-c", SHOW_IP6])
        reset = "for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 0 > $f; done"
        agent.lab.exec("legacy", ["sh", "-c", reset], check=False)


def link_local(lab: Lab, host: str) -> str:
    out = lab.exec(host, ["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]).stdout
    return out.split()[3].split("/")[0] if out.strip() else ""


V6_PORT = 8086
# A TCP listener on [::] (the lab's echo listener is IPv4 only, and the lab has no ping).
_LISTEN6 = ("import socket\ns = socket.socket(socket.AF_INET6)\n"
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('::', {V6_PORT}))\ns.listen()\nwhile True:\n    s.accept()[0].close()\n")
_CONNECT6 = "import socket, sys\nsocket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()\n"


@pytest.fixture
def listener6(without_ip6tables: Agent) -> Iterator[None]:
    lab = without_ip6tables.lab
    start = 'setsid python3 -c "$1" </dev/null >/dev/null 2>&1 & echo $!'
    pid = lab.exec("legacy", ["sh", "-c", start, "sh", _LISTEN6]).stdout.strip()
    try:
        yield
    finally:
        lab.exec("legacy", ["kill", pid], check=False)


def ping6(lab: Lab, src: str, address: str) -> bool:
    """A TCP connection over IPv6 from ``src`` to the listener on legacy (link-local, via eth0)."""
    return lab.exec(src, ["python3", "-c", _CONNECT6, f"{address}%eth0", str(V6_PORT)],
                    check=False).returncode == 0


def disable_ipv6(lab: Lab, host: str) -> str:
    return lab.exec(host, ["cat", "/proc/sys/net/ipv6/conf/eth0/disable_ipv6"]).stdout.strip()


class TestNoIp6tables:
    def test_ipv6_is_switched_off_and_restored(self, without_ip6tables: Agent, listener6: None) -> None:
        """Contain switches IPv6 off per interface (recorded for undo), so a peer's IPv6 ping fails and verify
        says so; release restores the recorded values and IPv6 works again."""
        agent, lab = without_ip6tables, without_ip6tables.lab
        address = link_local(lab, "legacy")
        assert address and wait_until(lambda: ping6(lab, "peer", address), timeout=5, interval=0.3)
        with agent.open("legacy") as s:
            snap, result, check = agent.isolate(s)
            assert result.changed and check.in_effect, (result, check)
            assert snap.data["ipv6_sysctls"]["eth0"] == "0"
            assert "IPv6 switched off" in result.summary
            assert "switched off" in check.observed["ipv6"]
            assert disable_ipv6(lab, "legacy") == "1" and link_local(lab, "legacy") == ""
            assert not ping6(lab, "peer", address)
            assert {k for k, v in rows(lab, LEGACY_ROWS).items() if v == "open"} == {"mgmt->legacy:22"}
            undo, after = agent.release(s, snap)
            assert undo.changed and not after.in_effect
            assert undo.details["ipv6_restored"]["eth0"] == "0"
        assert disable_ipv6(lab, "legacy") == "0"
        assert wait_until(lambda: ping6(lab, "peer", link_local(lab, "legacy") or "::"), timeout=6, interval=0.3)

    def test_the_timer_restores_ipv6_too(self, without_ip6tables: Agent) -> None:
        """An unconfirmed isolation reverts by itself, IPv6 included."""
        agent, lab = without_ip6tables, without_ip6tables.lab
        args = {"confirm_seconds": 5, "confirm": False}
        with agent.open("legacy") as s:
            _, _, check = agent.isolate(s, args)
            assert check.in_effect and disable_ipv6(lab, "legacy") == "1"
            assert wait_until(lambda: not agent.conn.verify(s, "isolate", args).in_effect, timeout=10,
                              interval=0.5)
        # the timer removes the rules first and then restores the sysctls: verify may see the first step done
        assert wait_until(lambda: disable_ipv6(lab, "legacy") == "0", timeout=5, interval=0.1)


class TestExactRelease:
    def test_release_states_tables_it_could_not_remove(self, agent: Agent) -> None:
        """iptables-nft creates empty filter tables on first use that no iptables command can delete: release
        must not claim the ruleset equals the snapshot; it names exactly the tables left behind."""
        lab = agent.lab

        def tables() -> set[str]:
            found = set()
            for family, tool in (("ip", "iptables-save"), ("ip6", "ip6tables-save")):
                found |= {f"{family} {ln[1:]}" for ln in lab.exec("legacy", [tool]).stdout.splitlines()
                          if ln.startswith("*")}
            return found
        before = tables()
        with agent.open("legacy") as s:
            snap, _, _ = agent.isolate(s)
            undo, _ = agent.release(s, snap)
        added = tables() - before
        assert added, "the premise: iptables-nft leaves its tables behind"
        assert undo.details["ruleset_equal_to_snapshot"] is False
        assert set(undo.details["empty_tables_left"]) == added
        assert "empty table" in undo.summary and undo.warnings
