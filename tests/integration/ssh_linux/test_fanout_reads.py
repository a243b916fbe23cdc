"""Fewer round trips per host without weaker proof (issue 19, fan-out on one machine): verify uses the state read
from the target as the last step of apply (isolation: through the fresh connection, after the dead-man timer was
cancelled) or of release, instead of sending the same ``ca_state`` again — and reads again when anything was sent
on the session since. Real sshd + nft (victim), effects read with the lab's own tools."""

from __future__ import annotations


import pytest

from connectors.ssh_linux.hostfuncs import READ_STATE
from tests.integration.ssh_linux.helpers import Agent, nft_ruleset, record_sent, timers_in

pytestmark = pytest.mark.root


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command any session (the first one and the fresh confirming one) sends, in order."""
    return record_sent(monkeypatch)


def test_verify_uses_the_reads_taken_after_isolating_and_after_releasing(agent: Agent, sent: list[str]) -> None:
    base = nft_ruleset(agent.lab, "victim")
    with agent.open("victim") as s:
        args = {"confirm_seconds": 60}
        snap = agent.conn.snapshot(s, "isolate", args)
        result = agent.conn.apply(s, "isolate", args, snap)
        assert result.changed and result.details["deadman"]["cancelled"] is True, result
        confirm = sent[-1]
        assert "DEADMAN_CONFIRMED" in confirm and confirm.endswith(READ_STATE), confirm  # confirm, then read
        before = len(sent)
        check = agent.conn.verify(s, "isolate", args)
        assert sent[before:] == []  # nothing sent: the read after the confirm is the proof
        assert check.in_effect, check
        # that read was taken after the timer was cancelled (an armed timer would make it "NOT confirmed")
        assert check.observed["deadman_armed_pid"] is None and timers_in(agent.lab, "victim") == []
        assert "containment_agent" in nft_ruleset(agent.lab, "victim")

        undo = agent.conn.undo(s, "isolate", {}, snap)
        assert undo.changed, undo
        before = len(sent)
        after = agent.conn.verify(s, "isolate", {})
        assert sent[before:] == []  # the release read its ruleset back in the same command
        assert not after.in_effect, after
    assert nft_ruleset(agent.lab, "victim") == base


def test_verify_reads_again_when_anything_was_sent_since(agent: Agent, sent: list[str]) -> None:
    with agent.open("victim") as s:
        snap, result, check = agent.isolate(s)
        assert result.changed and check.in_effect
        s.run("true")  # anything sent on the session may have changed the host: the remembered read is stale
        before = len(sent)
        check = agent.conn.verify(s, "isolate", {})
        assert sent[before:] == [READ_STATE] and check.in_effect
        agent.release(s, snap)


def test_tracked_flows_are_listed_from_procfs_and_deleted(agent: Agent) -> None:
    """The cut lists tracked flows from /proc/net/nf_conntrack (root login) instead of ``conntrack -L`` and still
    deletes every one that is not the management tuple: a flow the kernel tracks (inserted with conntrack -I, as
    an attacker's connection through the host would be) is gone after isolation."""
    lab = agent.lab
    attacker = "10.77.1.130"
    assert lab.exec("victim", ["test", "-r", "/proc/net/nf_conntrack"], check=False).returncode == 0  # that path
    lab.exec("victim", ["conntrack", "-I", "-p", "tcp", "-s", attacker, "-d", lab.hosts["victim"].address,
                        "--sport", "41000", "--dport", "8080", "--state", "ESTABLISHED", "--timeout", "120"])
    try:
        with agent.open("victim") as s:
            snap, result, check = agent.isolate(s)
            assert result.changed and check.in_effect
            cut = result.details["cut"]
            assert any(f.startswith(f"tcp {attacker}:41000 -> ") for f in cut["conntrack_flows"]), cut
            assert cut["conntrack_deleted"] >= 1, cut
            listed = lab.exec("victim", ["conntrack", "-L", "-s", attacker], check=False)
            assert attacker not in listed.stdout, listed.stdout
            agent.release(s, snap)
    finally:
        lab.exec("victim", ["conntrack", "-D", "-s", attacker], check=False)
