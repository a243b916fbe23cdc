"""Hosts whose sshd refuses root (issue 14 finding 6): the agent logs in as a service account and gets root per
command through ``sudo -n`` or ``doas -n``, with the least-privilege rules docs/linux-hosts.md documents.

The lab's ``sudohost`` runs sshd with ``PermitRootLogin no`` and ``AllowUsers svcagent``; its sudoers and doas.conf
are exactly :func:`connectors.ssh_linux.privilege.sudoers_snippet` / :func:`doas_conf`. Effects are proven with the
probe matrix and the host's own ruleset, read as root by the lab, never through the connector.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.lab import Lab
from agent.lab.probe import wait_until
from agent.lab.topology import SUDO_ACCOUNT
from connectors.errors import AuthError, InvalidInput, Rejected
from tests.integration.ssh_linux.helpers import Agent, nft_ruleset, rows

pytestmark = pytest.mark.root
ROWS = [("mgmt", "sudohost", 22), ("attacker", "sudohost", 8080), ("peer", "sudohost", 8080),
        ("sudohost", "peer", 8080)]
TIMER_DIR = f"/home/{SUDO_ACCOUNT}/.containment-agent"


@pytest.fixture
def sudo_agent(agent: Agent) -> Iterator[Agent]:
    yield agent
    stop = (f'read -r p _ < {TIMER_DIR}/deadman && kill -15 -"$p"; rm -f {TIMER_DIR}/deadman; true')
    agent.lab.exec("sudohost", ["sh", "-c", stop], check=False)


def open_rows(lab: Lab) -> set[str]:
    return {k for k, v in rows(lab, ROWS).items() if v == "open"}


class TestServiceAccount:
    def test_root_login_is_refused_by_sshd(self, sudo_agent: Agent) -> None:
        """The premise: sshd on this host does not let root in, even with the right key."""
        with pytest.raises(AuthError):
            sudo_agent.open("sudohost")

    @pytest.mark.parametrize("via", ["sudo", "doas"])
    def test_contain_verify_release_through(self, sudo_agent: Agent, via: str) -> None:
        """Isolated, verified and released as the service account; the timer lives in the account's own
        directory and the management-address check still sees the agent's real source (SSH_CONNECTION)."""
        lab = sudo_agent.lab
        baseline, before = rows(lab, ROWS), nft_ruleset(lab, "sudohost")
        assert set(baseline.values()) == {"open"}
        with sudo_agent.open("sudohost", user=SUDO_ACCOUNT, options={via: True}) as s:
            snap, result, check = sudo_agent.isolate(s)
            assert result.changed and check.in_effect, (result, check)
            assert result.details["deadman"]["cancelled"] is True
            assert open_rows(lab) == {"mgmt->sudohost:22"}
            assert "table inet containment_agent" in nft_ruleset(lab, "sudohost")
            lock = lab.exec("sudohost", ["stat", "-c", "%U %a", f"{TIMER_DIR}/lock"]).stdout.split()
            assert lock == [SUDO_ACCOUNT, "600"] or lock[0] == SUDO_ACCOUNT
            with pytest.raises(Rejected, match="cut the agent off"):
                sudo_agent.isolate(s, {"management": ["10.77.0.30"]})
            undo, after = sudo_agent.release(s, snap)
            assert undo.changed and not after.in_effect and undo.details["ruleset_equal_to_snapshot"]
        assert nft_ruleset(lab, "sudohost") == before
        assert rows(lab, ROWS) == baseline

    def test_unconfirmed_isolation_reverts_through_sudo(self, sudo_agent: Agent) -> None:
        """The dead-man timer runs as the service account and lifts the isolation with sudo -n by itself."""
        lab = sudo_agent.lab
        args = {"confirm_seconds": 5, "confirm": False}
        with sudo_agent.open("sudohost", user=SUDO_ACCOUNT, options={"sudo": True}) as s:
            _, result, check = sudo_agent.isolate(s, args)
            assert check.in_effect and "ARMED" in result.summary
            assert open_rows(lab) == {"mgmt->sudohost:22"}
            assert wait_until(lambda: not sudo_agent.conn.verify(s, "isolate", args).in_effect, timeout=10,
                              interval=0.5)
            assert sudo_agent.conn.verify(s, "isolate", args).observed["deadman_reverted_at"]
        assert "containment_agent" not in nft_ruleset(lab, "sudohost")
        assert len(open_rows(lab)) == len(ROWS)

    def test_without_the_option_the_account_is_refused_clearly(self, sudo_agent: Agent) -> None:
        """Without sudo/doas the account cannot read the firewall: a clear error, nothing changed."""
        before = nft_ruleset(sudo_agent.lab, "sudohost")
        with sudo_agent.open("sudohost", user=SUDO_ACCOUNT) as s, pytest.raises(Rejected, match="nft"):
            sudo_agent.isolate(s)
        assert nft_ruleset(sudo_agent.lab, "sudohost") == before

    def test_sudo_and_doas_together_are_invalid(self, sudo_agent: Agent) -> None:
        """Both options at once (or a non-boolean) is bad input, refused before connecting."""
        for options in ({"sudo": True, "doas": True}, {"sudo": "yes"}):
            with pytest.raises(InvalidInput, match="options"):
                sudo_agent.conn.validate(sudo_agent.target("sudohost", options=options), "isolate", {})
