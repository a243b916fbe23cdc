"""The isolation rulesets, their read-back judgement, flow filters and dead-man scripts, as exact text."""

from __future__ import annotations

import json
import shlex

from connectors.ssh_linux import deadman, flows, rules
from connectors.ssh_linux.state import judge, normalise, parse_state, ruleset_diff
from connectors.ssh_linux.validation import parse_management

MGMT = parse_management(["10.77.0.10", "fd00::10"])

GOLDEN_NFT = """table inet containment_agent
delete table inet containment_agent
table inet containment_agent {
\tcomment "containment-agent: host isolation; lifted by agent release"
\tchain input {
\t\ttype filter hook input priority -10; policy drop;
\t\tiif "lo" accept
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept
\t\tip saddr 10.77.0.10 tcp dport 22 accept
\t\tip6 saddr fd00::10 tcp dport 22 accept
\t}
\tchain output {
\t\ttype filter hook output priority -10; policy drop;
\t\toif "lo" accept
\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } ip6 hoplimit 255 accept
\t\tip daddr 10.77.0.10 tcp sport 22 accept
\t\tip6 daddr fd00::10 tcp sport 22 accept
\t}
\tchain forward {
\t\ttype filter hook forward priority -10; policy drop;
\t}
}
"""

GOLDEN_IPT4 = """*filter
:CAGENT_IN - [0:0]
:CAGENT_OUT - [0:0]
:CAGENT_FWD - [0:0]
-A CAGENT_IN -i lo -m comment --comment containment-agent -j ACCEPT
-A CAGENT_IN -s 10.77.0.10/32 -p tcp -m tcp --dport 2222 -m comment --comment containment-agent -j ACCEPT
-A CAGENT_IN -m comment --comment containment-agent -j DROP
-A CAGENT_OUT -o lo -m comment --comment containment-agent -j ACCEPT
-A CAGENT_OUT -d 10.77.0.10/32 -p tcp -m tcp --sport 2222 -m comment --comment containment-agent -j ACCEPT
-A CAGENT_OUT -m comment --comment containment-agent -j DROP
-A CAGENT_FWD -m comment --comment containment-agent -j DROP
-I INPUT 1 -j CAGENT_IN
-I OUTPUT 1 -j CAGENT_OUT
-I FORWARD 1 -j CAGENT_FWD
COMMIT
"""

# What `nft -j list table inet containment` printed for GOLDEN_NFT on nftables 1.0.6 (handles trimmed).
NFT_JSON = {"nftables": [
    {"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "containment_agent"}},
    {"chain": {"family": "inet", "table": "containment_agent", "name": "input", "type": "filter", "hook": "input",
               "prio": -10, "policy": "drop"}},
    {"rule": {"chain": "input", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "lo"}},
                                         {"accept": None}]}},
    {"rule": {"chain": "input", "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}},
                   "right": {"set": ["nd-neighbor-solicit", "nd-neighbor-advert"]}}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "hoplimit"}}, "right": 255}},
        {"accept": None}]}},
    {"rule": {"chain": "input", "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.77.0.10"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
        {"counter": {"packets": 3, "bytes": 180}}, {"accept": None}]}},
    {"rule": {"chain": "input", "expr": [
        {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "fd00::10"}},
        {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 22}},
        {"accept": None}]}},
    {"chain": {"family": "inet", "table": "containment_agent", "name": "output", "type": "filter", "hook": "output",
               "prio": -10, "policy": "drop"}},
    {"chain": {"family": "inet", "table": "containment_agent", "name": "forward", "type": "filter", "hook": "forward",
               "prio": -10, "policy": "drop"}},
]}


def _nft_state(listing: dict[str, object] | None) -> str:
    table = json.dumps(listing) if listing else ""
    return (f"DEADMAN_PID=\nDEADMAN_REVERTED=\n@@SSH 10.77.0.10 50000 10.77.0.20 22\n@@TOOL nft\n@@RULESET\n"
            f"table inet containment_agent {{\n\tcomment \"{rules.OWNER_MARK}\"\n}}\n@@TABLE\n{table}\n")


class TestNftRuleset:
    def test_golden_script_with_ipv6_management(self) -> None:
        """One atomic batch: create-if-missing, delete, full table; ND allowed only because of the IPv6 pin."""
        assert rules.nft_script(MGMT, 22) == GOLDEN_NFT

    def test_no_generic_established_accept(self) -> None:
        """The ruleset never accepts established/related traffic in general (it would keep attackers in)."""
        text = rules.nft_script(MGMT, 22)
        assert "ct state" not in text and "established" not in text

    def test_ipv4_only_has_no_icmpv6(self) -> None:
        """Without an IPv6 management address, IPv6 is dropped entirely except loopback."""
        assert "icmpv6" not in rules.nft_script(parse_management(["10.0.0.1"]), 22)

    def test_networks_are_rendered_as_prefixes(self) -> None:
        """A management network appears as a prefix, a host without /32."""
        text = rules.nft_script(parse_management(["10.9.0.0/24", "10.0.0.1"]), 2222)
        assert "ip saddr 10.9.0.0/24 tcp dport 2222 accept" in text and "ip saddr 10.0.0.1 tcp" in text

    def test_json_summary_matches_expected(self) -> None:
        """Rules read back as nft JSON render to exactly the expected canonical lines (counters ignored)."""
        summary = rules.nft_summary(NFT_JSON)
        assert summary["input"]["rules"] == rules.nft_expected(MGMT, 22)["input"]
        assert summary["input"]["policy"] == "drop" and summary["forward"]["hook"] == "forward"


class TestJudgement:
    def test_expected_table_is_in_effect(self) -> None:
        """The host state matching the plan yields no problems."""
        full = json.loads(json.dumps(NFT_JSON))
        out_rules = [{"rule": {"chain": "output", "expr": e}} for e in (
            [{"match": {"op": "==", "left": {"meta": {"key": "oif"}}, "right": "lo"}}, {"accept": None}],
            [{"match": {"op": "==", "left": {"payload": {"protocol": "icmpv6", "field": "type"}},
                        "right": {"set": ["nd-neighbor-solicit", "nd-neighbor-advert"]}}},
             {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "hoplimit"}}, "right": 255}},
             {"accept": None}],
            [{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "10.77.0.10"}},
             {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "sport"}}, "right": 22}},
             {"accept": None}],
            [{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": "fd00::10"}},
             {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "sport"}}, "right": 22}},
             {"accept": None}])]
        full["nftables"].extend(out_rules)
        state = parse_state(_nft_state(full))
        assert state.agent_source == "10.77.0.10" and state.agent_server_port == 22
        assert judge(state, MGMT, 22) == []

    def test_missing_output_rules_reported(self) -> None:
        """A table whose output chain lost its rules is not in effect, and the problem names the chain."""
        problems = judge(parse_state(_nft_state(NFT_JSON)), MGMT, 22)
        assert problems and all("output" in p for p in problems)

    def test_different_management_address_is_not_in_effect(self) -> None:
        """Isolation for another management address does not count as already isolated."""
        assert judge(parse_state(_nft_state(NFT_JSON)), parse_management(["10.77.0.11", "fd00::10"]), 22)

    def test_absent_table(self) -> None:
        """No table at all: not present, one clear problem."""
        state = parse_state(_nft_state(None))
        assert not state.present and judge(state, MGMT, 22) == ["table inet containment_agent absent"]

    def test_iptables_duplicate_jump_is_a_problem(self) -> None:
        """A jump inserted twice (the LAB.md pitfall) is reported, not accepted."""
        chains = rules.iptables_expected(MGMT, 22, 4)
        save = ("*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j CAGENT_IN\n-A INPUT -j CAGENT_IN\n"
                "-A OUTPUT -j CAGENT_OUT\n-A FORWARD -j CAGENT_FWD\n"
                + "\n".join(line for c in chains.values() for line in c) + "\nCOMMIT\n")
        out = f"@@SSH 10.77.0.10 1 10.77.0.40 22\n@@TOOL iptables\n@@RULESET\n{save}@@NO_IP6TABLES\n"
        state = parse_state(out)
        assert not state.has_ip6tables
        assert judge(state, MGMT, 22) == ["iptables INPUT: jump to CAGENT_IN at positions [1, 2] (expected [1])"]


class TestIptablesText:
    def test_golden_restore_text(self) -> None:
        """iptables-restore --noflush input: our chains, then jumps at position 1 for missing ones only."""
        assert rules.iptables_restore(MGMT, 2222, 4) == GOLDEN_IPT4

    def test_present_jumps_not_reinserted(self) -> None:
        """Jumps that iptables -C found are not inserted again."""
        text = rules.iptables_restore(MGMT, 22, 6, missing_jumps=["CAGENT_FWD"])
        assert "-I INPUT" not in text and "-I FORWARD 1 -j CAGENT_FWD" in text
        assert ("-A CAGENT_IN -s fd00::10/128 -p tcp -m tcp --dport 22 -m comment --comment containment-agent "
                "-j ACCEPT") in text

    def test_normalise_ignores_counters_comments_and_inert_tables(self) -> None:
        """Counters, '#' lines and an empty all-ACCEPT filter table compare equal to nothing."""
        before = "# Generated by iptables-save\n"
        after = "# Generated\n*filter\n:INPUT ACCEPT [12:345]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [1:2]\nCOMMIT\n"
        assert normalise(before) == normalise(after) == ""
        assert ruleset_diff("counter packets 5 bytes 10 accept", "counter packets 9 bytes 99 accept") == []
        assert ruleset_diff("a\n", "a\nb\n")[-1] == "+b"

    def test_lines_gone_are_only_what_the_snapshot_had(self):
        """A release deletes and never adds: only lines the snapshot had and the host lacks now can be its doing
        (connectors/ssh_linux/releasing.py); a rule present twice and now once counts."""
        from connectors.ssh_linux.releasing import lines_gone
        assert lines_gone("a\nb\n", "a\nb\nc\n") == []
        assert lines_gone("a\nb\n", "a\nc\n") == ["b"]
        assert lines_gone("x\nx\n", "x\n") == ["x"]


class TestFlowsAndDeadman:
    def test_ss_filter_keeps_management_tuple_and_loopback(self) -> None:
        """Everything except sport 22 to a management address and loopback is destroyed."""
        assert " ".join(flows.ss_filter(MGMT, 22)) == (
            "not ( ( sport = :22 and ( dst 10.77.0.10 or dst [fd00::10] ) ) or dst 127.0.0.0/8 or dst [::1] )")

    def test_conntrack_parse_skips_management_flow(self) -> None:
        """The agent's own SSH flow is kept; other flows are parsed into validated tuples."""
        text = ("tcp      6 431999 ESTABLISHED src=10.77.0.10 dst=10.77.0.20 sport=50000 dport=22 src=10.77.0.20 "
                "dst=10.77.0.10 sport=22 dport=50000 [ASSURED] mark=0 use=1\n"
                "tcp      6 431999 ESTABLISHED src=10.77.1.130 dst=10.77.0.20 sport=41000 dport=8080 "
                "src=10.77.0.20 dst=10.77.1.130 sport=8080 dport=41000 [ASSURED] mark=0 use=1\n"
                "icmp     1 29 src=10.77.0.30 dst=10.77.0.20 type=8 code=0 id=7 src=10.77.0.20 dst=10.77.0.30\n"
                "tcp      6 10 ESTABLISHED src=1.2.3.4;id dst=10.77.0.20 sport=1 dport=2\n")
        found = flows.parse_conntrack(text, MGMT, 22)
        assert found == [{"proto": "tcp", "src": "10.77.1.130", "dst": "10.77.0.20", "sport": 41000, "dport": 8080},
                         {"proto": "icmp", "src": "10.77.0.30", "dst": "10.77.0.20", "sport": None, "dport": None}]
        script = flows.conntrack_delete_script(found)
        assert "priv conntrack -D -p tcp -s 10.77.1.130 -d 10.77.0.20 --sport 41000 --dport 8080" in script

    def test_deadman_arm_is_detached_quoted_and_token_checked(self) -> None:
        """The timer runs in its own session without the lock's fd, its body one quoted argument that reverts only
        if the record under the lock still names its own PID and token."""
        token = "ab" * 16
        cmd = deadman.arm_command(30, rules.NFT_RELEASE, token, "agent-host:4242")
        inner = (f': containment-deadman {token}; priv() {{ "$@"; }}; D=$1; echo "$$ {token} agent-host:4242 $2 '
                 '$(($2 + 30))" > "$D/deadman" || exit 1; sleep 30; exec 9>>"$D/lock"; flock 9; '
                 'p=; t=; { read -r p t _ < "$D/deadman"; } 2>/dev/null; '
                 f'if [ "$p" = "$$" ] && [ "$t" = {token} ]; then priv nft delete table inet containment_agent; '
                 f'rm -f "$D/deadman"; echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) {token}" > "$D/reverted"; fi')
        assert (f'setsid nohup sh -c {shlex.quote(inner)} containment-deadman "$D" "$now" </dev/null >/dev/null '
                '2>&1 9>&- &') in cmd
        assert deadman.parse_arm("x\nDEADMAN_PID=4242\n") == 4242
        assert deadman.parse_confirm("DEADMAN_CONFIRMED=none") == ("gone", "")
        assert deadman.parse_confirm("DEADMAN_OTHER=cd x:1") == ("other", "cd x:1")

    def test_deadman_refuses_values_that_are_not_tokens(self) -> None:
        """Only hex tokens and host:pid owners ever reach the shell text."""
        import pytest
        for token, owner in (("ab;id", "h:1"), ("ab" * 16, "h;id:1"), ("ab" * 16, "h:$(id)")):
            with pytest.raises(ValueError):
                deadman.arm_command(30, "true", token, owner)

    def test_status_parses_a_live_timer(self) -> None:
        """The status lines become a record with the host's own clock (remaining and age)."""
        rec = deadman.parse_status("DEADMAN_PID=77\nDEADMAN_TOKEN=abab\nDEADMAN_OWNER=h:1\nDEADMAN_STARTED=100\n"
                                   "DEADMAN_DUE=130\nDEADMAN_NOW=110\nDEADMAN_REVERTED=\n")
        assert rec is not None and rec.remaining == 20 and rec.age == 10 and rec.owner == "h:1"
        assert deadman.parse_status("DEADMAN_PID=\nDEADMAN_REVERTED=\n") is None


class TestPrivilegeDocs:
    def test_docs_show_exactly_the_generated_rules(self) -> None:
        """docs/linux-hosts.md carries the sudoers and doas.conf text the lab installs, verbatim."""
        from pathlib import Path

        from connectors.ssh_linux.privilege import doas_conf, sudoers_snippet
        text = (Path(__file__).resolve().parents[2] / "docs" / "linux-hosts.md").read_text()
        assert sudoers_snippet("svc-contain").strip() in text and doas_conf("svc-contain").strip() in text

    def test_priv_prelude_per_privilege(self) -> None:
        """root runs commands directly; sudo/doas resolve the absolute path first and never prompt."""
        from connectors.ssh_linux.privilege import parse_privilege, prelude
        assert prelude("root").startswith('priv() { "$@"; }')
        assert 'sudo -n -- "$c"' in prelude("sudo") and 'doas -n "$c"' in prelude("doas")
        assert 'D="$HOME/.containment-agent"' in prelude("sudo") and "D=/run/containment-agent" in prelude("root")
        assert parse_privilege({}) == "root" and parse_privilege({"doas": True}) == "doas"
