"""ssh_linux against the practice lab: real sshd, nftables and iptables in network namespaces, from ``mgmt``.

Effects are proven at the network level (the probe matrix and live TCP connections), rulesets by reading them
back with the lab's own tools, never by trusting the connector's report.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from agent.lab.probe import wait_until
from connectors.errors import HostKeyError, Rejected, Unreachable, VerifyFailed
from connectors.ssh_linux.state import normalise
from connectors.types import Snapshot

from tests.integration.ssh_linux.helpers import (
    LEGACY_ROWS,
    VICTIM_ROWS,
    Agent,
    ipt_state,
    nft_ruleset,
    rows,
    timers_in,
)

pytestmark = pytest.mark.root


class TestIsolateVictim:
    def test_isolation_round_trip(self, agent: Agent) -> None:
        """Only mgmt→victim:22 stays open, pre-opened attacker/peer connections die, release restores all."""
        lab = agent.lab
        baseline, base_rules = rows(lab, VICTIM_ROWS), nft_ruleset(lab, "victim")
        assert set(baseline.values()) == {"open"}
        with lab.open_session("attacker", "victim", 8080) as attacker, \
                lab.open_session("victim", "peer", 8080) as outbound:
            self._round_trip(agent, attacker, outbound, baseline, base_rules)

    def _round_trip(self, agent: Agent, attacker: Any, outbound: Any, baseline: dict[str, str],
                    base_rules: str) -> None:
        lab = agent.lab
        assert attacker.alive() and outbound.alive()
        s = agent.open("victim")
        try:
            snap, result, check = agent.isolate(s)
            assert result.changed and check.in_effect, (result, check)
            assert result.details["deadman"]["cancelled"] is True
            assert result.details["cut"]["sockets_killed_count"] >= 2
            isolated = rows(lab, VICTIM_ROWS)
            assert {k for k, v in isolated.items() if v == "open"} == {"mgmt->victim:22"}, isolated
            assert not attacker.alive(timeout=1) and not outbound.alive(timeout=1)
            assert s.run("echo still-here")[1].strip() == "still-here"  # the agent's own session survived
            assert lab.exec("victim", ["sh", "-c", "cat /run/containment-agent/deadman 2>/dev/null; true"]).stdout == ""
            undo, after = agent.release(s, snap)
            assert undo.changed and not after.in_effect
        finally:
            s.close()
        assert nft_ruleset(lab, "victim") == base_rules
        assert rows(lab, VICTIM_ROWS) == baseline
        # Dead, not merely stalled: the attacker's old connection does not come back after release.
        assert not attacker.alive(timeout=1)

    def test_without_cut_a_connection_only_freezes(self, agent: Agent) -> None:
        """Control: with cut_sessions=false the old connection stalls and comes back after release (LAB.md)."""
        with agent.lab.open_session("attacker", "victim", 8080) as attacker, agent.open("victim") as s:
            snap, result, _ = agent.isolate(s, {"cut_sessions": False})
            assert "cut" not in result.details and any("frozen" in w for w in result.warnings)
            assert not attacker.alive(timeout=0.5)
            agent.release(s, snap)
            assert attacker.alive(timeout=3)

    def test_second_isolate_is_a_no_op(self, agent: Agent) -> None:
        """Isolating an isolated host changes nothing: changed=False and an identical ruleset."""
        with agent.open("victim") as s:
            snap, first, _ = agent.isolate(s)
            before = nft_ruleset(agent.lab, "victim")
            _, second, check = agent.isolate(s)
            assert first.changed and not second.changed and check.in_effect
            assert second.summary.startswith("already isolated")
            assert nft_ruleset(agent.lab, "victim") == before
            agent.release(s, snap)

    def test_release_of_a_host_that_is_not_isolated(self, agent: Agent) -> None:
        """Release without isolation reports 'nothing to release' and changes nothing."""
        before = nft_ruleset(agent.lab, "victim")
        with agent.open("victim") as s:
            snap = agent.conn.snapshot(s, "isolate", {})
            result, check = agent.release(s, snap)
        assert not result.changed and result.summary == "not isolated; nothing to release"
        assert not check.in_effect and nft_ruleset(agent.lab, "victim") == before

    def test_release_detects_foreign_changes(self, agent: Agent) -> None:
        """A table someone added while isolated is named in the release's warning; the release itself is done —
        it only deletes, so an added line cannot be its doing (tests/integration/cli/
        test_release_after_foreign_rules.py has why: fail2ban made every release 'in doubt'). A line the host
        had before that is now gone is not trusted: the release fails loudly, naming it."""
        from connectors.errors import VerifyFailed
        with agent.open("victim") as s:
            snap, _, _ = agent.isolate(s)
            agent.lab.exec("victim", ["nft", "add", "table", "ip", "intruder"])
            res, check = agent.release(s, snap)
            assert not check.in_effect and res.changed
            assert any("intruder" in w and "review them" in w for w in res.warnings), res
            assert any("intruder" in line for line in res.details["added_while_contained"])
            agent.lab.exec("victim", ["nft", "delete", "table", "ip", "intruder"])
            agent.lab.exec("victim", ["nft", "add", "table", "ip", "before"])
            snap, _, _ = agent.isolate(s)
            agent.lab.exec("victim", ["nft", "delete", "table", "ip", "before"])
            with pytest.raises(VerifyFailed, match="before"):
                agent.release(s, snap)
        assert "containment" not in nft_ruleset(agent.lab, "victim")

    def test_refuses_when_agent_is_not_a_management_address(self, agent: Agent) -> None:
        """If the host sees the agent from an address outside the management list, nothing is applied."""
        from connectors.errors import Rejected
        with agent.open("victim") as s, pytest.raises(Rejected, match="cut the agent off"):
            agent.isolate(s, {"management": ["10.77.0.30"]})
        assert "containment" not in nft_ruleset(agent.lab, "victim")


class TestLegacyIptables:
    def test_iptables_round_trip(self, agent: Agent) -> None:
        """Without nft: CONTAIN_* chains via iptables-restore, same probe effect, exact release; re-run no-op."""
        lab = agent.lab
        baseline, base_state = rows(lab, LEGACY_ROWS), ipt_state(lab, "legacy")
        with lab.open_session("attacker", "legacy", 8080) as attacker, agent.open("legacy") as s:
            snap, result, check = agent.isolate(s)
            assert snap.data["tool"] == "iptables" and result.changed and check.in_effect
            isolated = rows(lab, LEGACY_ROWS)
            assert {k for k, v in isolated.items() if v == "open"} == {"mgmt->legacy:22"}, isolated
            assert not attacker.alive(timeout=1)
            _, again, _ = agent.isolate(s)
            assert not again.changed
            save = lab.exec("legacy", ["iptables-save"]).stdout
            assert save.count("-A INPUT -j CAGENT_IN") == 1
            assert "-A CAGENT_IN -m comment --comment containment-agent -j DROP" in \
                lab.exec("legacy", ["ip6tables-save"]).stdout
            undo, after = agent.release(s, snap)
            assert undo.changed and not after.in_effect
        assert ipt_state(lab, "legacy") == base_state
        assert rows(lab, LEGACY_ROWS) == baseline


class TestDeadman:
    def test_unconfirmed_isolation_reverts_itself(self, agent: Agent) -> None:
        """With confirm=False the timer stays armed and the host lifts the isolation by itself."""
        lab = agent.lab
        baseline = rows(lab, VICTIM_ROWS)
        with agent.open("victim") as s:
            args = {"confirm_seconds": 5, "confirm": False}
            _, result, check = agent.isolate(s, args)
            assert check.in_effect and check.observed["deadman_armed_pid"] == result.details["deadman"]["pid"]
            assert "ARMED" in result.summary
            assert timers_in(lab, "victim") == [result.details["deadman"]["pid"]]  # (timers_in sees real timers)
            assert rows(lab, [("attacker", "victim", 8080)]) == {"attacker->victim:8080": "blocked"}
            assert wait_until(lambda: not agent.conn.verify(s, "isolate", args).in_effect, timeout=9, interval=0.5)
            check = agent.conn.verify(s, "isolate", args)
            assert check.observed["deadman_reverted_at"] and check.observed["deadman_armed_pid"] is None
        assert rows(lab, VICTIM_ROWS) == baseline
        assert "containment" not in nft_ruleset(lab, "victim")


class TestConfirmOrRevert:
    """The safety net around the load: no load without a live timer, no isolation without a fresh login."""

    # Connection tracking must already run when the agent's session starts (nothing in the lab uses it before),
    # or its packets would be picked up mid-stream as "new" and dropped too.
    TRACKING = ("table inet labblock {\n chain input {\n  type filter hook input priority -10; policy accept;\n"
                "  ct state new counter\n }\n}\n")
    BLOCK_NEW_SSH = ("nft", "add", "rule", "inet", "labblock", "input", "tcp", "dport", "22", "ct", "state", "new",
                     "drop")

    def test_fresh_login_failing_reverts_the_isolation(self, agent: Agent) -> None:
        """New SSH connections are dropped by something else on the host: the agent's own session still works,
        but it would never get back in — so the rules are removed again, the timer cancelled, nothing left."""
        lab = agent.lab
        lab.exec("victim", ["nft", "-f", "-"], input=self.TRACKING)
        try:
            with agent.open("victim") as s:
                lab.exec("victim", list(self.BLOCK_NEW_SSH))
                before = normalise(nft_ruleset(lab, "victim"))  # without packet counters
                with pytest.raises(VerifyFailed, match="fresh management connection failed"):
                    agent.isolate(s)
                assert not agent.conn.verify(s, "isolate", {}).in_effect
                assert normalise(nft_ruleset(lab, "victim")) == before
                assert agent.conn.verify(s, "isolate", {}).observed["deadman_armed_pid"] is None
        finally:
            lab.exec("victim", ["nft", "delete", "table", "inet", "labblock"], check=False)
        assert rows(lab, [("attacker", "victim", 8080)]) == {"attacker->victim:8080": "open"}

    def test_no_load_without_a_live_timer(self, agent: Agent) -> None:
        """When the dead-man timer cannot start (its PID file cannot be written), the ruleset is never loaded."""
        lab = agent.lab
        lab.exec("victim", ["mkdir", "-p", "/run/containment-agent/deadman"])
        try:
            before = nft_ruleset(lab, "victim")
            with agent.open("victim") as s, pytest.raises(Rejected, match="dead-man timer could not be armed"):
                agent.isolate(s, {"confirm_seconds": 30})
            assert nft_ruleset(lab, "victim") == before
            assert rows(lab, [("attacker", "victim", 8080)]) == {"attacker->victim:8080": "open"}
            # and no orphan timer that nobody could cancel is left waiting to "revert" later
            assert timers_in(lab, "victim") == [], "an orphan dead-man timer was left on the host"
        finally:
            lab.exec("victim", ["rmdir", "/run/containment-agent/deadman"], check=False)

    def test_snapshot_read_is_reused_only_when_nothing_ran_since(self, agent: Agent,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
        """apply does not read the firewall state again right after the snapshot read it, but does once any
        other command ran on the session in between (it could have changed the host)."""
        with agent.open("victim") as s:
            seen: list[str] = []
            real_run = s.run

            def run(cmd: str, *a: Any, **kw: Any) -> Any:
                seen.append(kw.get("what", ""))
                return real_run(cmd, *a, **kw)

            monkeypatch.setattr(s, "run", run)
            for extra_command in (False, True):
                snap = agent.conn.snapshot(s, "isolate", {})
                if extra_command:
                    s.run("true", what="something else")
                seen.clear()
                assert agent.conn.apply(s, "isolate", {}, snap).changed
                assert seen.count("read firewall state") == (1 if extra_command else 0), seen
                agent.conn.undo(s, "isolate", {}, snap)


class TestConnecting:
    def test_unknown_host_key_refused(self, agent: Agent, tmp_path: Path) -> None:
        """A known_hosts file without the victim refuses the connection, naming the fingerprint."""
        empty = tmp_path / "known_hosts"
        empty.write_text("")
        other = Agent(agent.lab, known_hosts=str(empty))
        with pytest.raises(HostKeyError, match=r"10\.77\.0\.20.*unknown.*SHA256:"):
            other.open("victim")

    def test_changed_host_key_refused(self, agent: Agent, tmp_path: Path) -> None:
        """Presenting peer's key for the victim's address (a swapped host) is refused as CHANGED."""
        lines = agent.lab.known_hosts.read_text().splitlines()
        peer_key = next(ln.split(" ", 1)[1] for ln in lines if ln.startswith("10.77.0.30 "))
        swapped = tmp_path / "known_hosts"
        swapped.write_text(f"10.77.0.20 {peer_key}\n")
        other = Agent(agent.lab, known_hosts=str(swapped), trust_unknown_host_key=True)
        with pytest.raises(HostKeyError, match="CHANGED"):
            other.open("victim")

    def test_unused_address_fails_fast(self, agent: Agent) -> None:
        """An address nobody answers for is Unreachable/Timeout within about the connect timeout."""
        quick = Agent(agent.lab, connect_timeout=1.5)
        start = time.monotonic()
        with pytest.raises(Unreachable):
            quick.open("victim", address="10.77.0.99")
        assert time.monotonic() - start < 4


class TestEvidenceAndSessions:
    def test_capture_evidence(self, agent: Agent) -> None:
        """The five evidence files come back from the victim within the time budget."""
        start = time.monotonic()
        with agent.open("victim") as s:
            result = agent.conn.apply(s, "capture_evidence", {}, Snapshot())
        files = result.details["evidence"]
        assert set(files) == {"processes.txt", "connections.txt", "users.txt", "auth_log.txt", "firewall.txt"}
        assert "sshd" in files["processes.txt"] and ":22" in files["connections.txt"]
        assert "nft list ruleset" in files["firewall.txt"]
        assert set(result.details["errors"]) <= {"auth_log.txt", "users.txt"}, result.details["errors"]
        assert not result.changed and time.monotonic() - start < 10

    def test_kill_sessions_of_a_user(self, agent: Agent, tmp_path: Path) -> None:
        """Every process of the user dies; root and unknown users are handled without killing anything else."""
        from connectors.errors import Rejected
        lab = agent.lab
        uid = 47911
        passwd = tmp_path / "passwd"
        passwd.write_text(Path("/etc/passwd").read_text() + f"cslvictim:x:{uid}:{uid}::/nonexistent:/bin/sh\n")
        # Only inside the victim's private mount namespace does the user exist.
        lab.exec("victim", ["mount", "--bind", str(passwd), "/etc/passwd"])
        try:
            sleeper = (f"setpriv --reuid={uid} --regid={uid} --clear-groups setsid sleep 300 "
                       "</dev/null >/dev/null 2>&1 &")
            lab.exec("victim", ["sh", "-c", sleeper])
            with agent.open("victim") as s:
                assert not agent.conn.verify(s, "kill_sessions", {"user": "cslvictim"}).in_effect
                result = agent.conn.apply(s, "kill_sessions", {"user": "cslvictim"}, Snapshot())
                assert result.changed and result.details["killed_count"] >= 1 and result.details["uid"] == uid
                assert agent.conn.verify(s, "kill_sessions", {"user": "cslvictim"}).in_effect
                with pytest.raises(Rejected, match="root"):
                    agent.conn.apply(s, "kill_sessions", {"user": "root"}, Snapshot())
                gone = agent.conn.apply(s, "kill_sessions", {"user": "nosuchuser"}, Snapshot())
                assert not gone.changed and "unknown" in gone.summary
        finally:
            lab.exec("victim", ["umount", "/etc/passwd"], check=False)
