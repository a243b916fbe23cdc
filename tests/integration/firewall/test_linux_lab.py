"""The ``linux`` dialect against the practice lab's real router ``fw`` (sshd + nftables), driven from ``mgmt``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agent.lab import Lab
from connectors.firewall import FirewallConnector
from connectors.types import ConnectorContext, Credentials, Target

pytestmark = pytest.mark.root

ATTACKER = "10.77.1.130"
PATH = [("attacker", "victim", 8080)]


class Fw:
    """The lab router as the engine sees it, with sessions opened from the management host."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.conn = FirewallConnector()
        self.target = Target("fw", "device", lab.hosts["fw"].address, "firewall", port=22,
                             options={"device_type": "linux"})
        self.creds = Credentials("root", private_key_path=str(lab.agent_key))
        self.ctx = ConnectorContext(known_hosts=str(lab.known_hosts), connect_timeout=5, command_timeout=10)

    def args(self, *addrs: str) -> dict[str, Any]:
        return {"addresses": list(addrs), "allow_private": True, "protected": [f"{self.lab.management_address}/32"]}

    def run(self, action: str, args: dict[str, Any]) -> tuple[Any, Any, Any]:
        self.conn.validate(self.target, action, args)
        with self.lab.enter("mgmt"), self.conn.open(self.target, self.creds, self.ctx) as s:
            snap = self.conn.snapshot(s, action, args)
            result = self.conn.apply(s, action, args, snap)
            check = self.conn.verify(s, action, args)
        return snap, result, check

    def undo(self, action: str, args: dict[str, Any], snap: Any) -> tuple[Any, Any]:
        with self.lab.enter("mgmt"), self.conn.open(self.target, self.creds, self.ctx) as s:
            result = self.conn.undo(s, action, args, snap)
            check = self.conn.verify(s, action, args)
        return result, check

    def path_state(self) -> str:
        return self.lab.probe(PATH).state("attacker", "victim", 8080)


@pytest.fixture
def fw(clean_lab: Lab) -> Iterator[Fw]:
    yield Fw(clean_lab)


class TestLinuxRouter:
    def test_block_drops_attacker_and_undo_restores(self, fw: Fw) -> None:
        """While the attacker is blocked on fw its traffic to victim:8080 is dropped; blocking twice changes
        nothing; undo lets it flow again."""
        # the router's own stateful ruleset (as a real edge router has): connection tracking runs in its netns
        for argv in (["add", "table", "inet", "site"],
                     ["add", "chain", "inet", "site", "stateful",
                      "{ type filter hook forward priority 0; policy accept; }"],
                     ["add", "rule", "inet", "site", "stateful", "ct", "state", "established,related", "accept"]):
            fw.lab.exec("fw", ["nft", *argv])
        assert fw.path_state() == "open"
        live = fw.lab.open_session("attacker", "victim", 8080)
        assert live.alive()
        tracked = fw.lab.exec("fw", ["conntrack", "-L", "-s", ATTACKER]).stderr
        assert "0 flow entries" not in tracked, tracked
        args = fw.args(ATTACKER)
        snap, result, check = fw.run("block_ip", args)
        assert result.changed and check.in_effect and result.details["scaffold_created"]
        assert any("NOT persistent" in w and "reboot" in w for w in result.warnings), result.warnings
        assert fw.path_state() == "blocked"
        assert not live.alive(timeout=1.0)   # the drop rules carry no "established" exception
        live.close()
        # the router's connection-tracking entries of the attacker are deleted (conntrack -D -s/-d), counted in
        # the result (journaled), and verify read back that none remains
        assert result.details["sessions_cleared"].get(ATTACKER, 0) >= 1, result.details
        table, loop = result.details["sessions"]   # the table's addresses read once, then one loop per chunk
        assert table.startswith("ct_seen=") and loop.startswith(f"for a in {ATTACKER}; do"), result.details
        assert "conntrack -D $f" in loop, loop
        assert check.observed["sessions_left"] == {} and "no established session" in check.summary, check.summary
        shown = fw.lab.exec("fw", ["conntrack", "-L", "-s", ATTACKER]).stderr
        assert "0 flow entries" in shown, shown
        listing = fw.lab.exec("fw", ["nft", "list", "set", "inet", "ir_block", "v4"]).stdout
        assert ATTACKER in listing

        _, again, check2 = fw.run("block_ip", args)
        assert not again.changed and again.details["applied_lines"] == [] and check2.in_effect

        undone, after = fw.undo("block_ip", args, snap)
        assert undone.changed and not after.in_effect
        assert fw.path_state() == "open"

    def test_unblock_and_list(self, fw: Fw) -> None:
        """unblock_ip removes only what was asked; list_blocked reads the set back from the router."""
        fw.run("block_ip", fw.args(ATTACKER, "45.33.0.0/24"))
        _, listed, _ = fw.run("list_blocked", {})
        assert set(listed.details["blocked"]) == {ATTACKER, "45.33.0.0/24"}
        _, result, check = fw.run("unblock_ip", fw.args(ATTACKER))
        assert result.details["removed"] == [ATTACKER] and check.in_effect
        assert fw.path_state() == "open"
        _, listed, _ = fw.run("list_blocked", {})
        assert listed.details["blocked"] == ["45.33.0.0/24"]

    def test_many_addresses_clear_in_a_few_loops(self, fw: Fw) -> None:
        """120 addresses: a handful of conntrack loops (not 240 commands), every address counted and read back."""
        many = [f"45.60.{i // 200}.{i % 200 + 1}" for i in range(120)]
        _, result, check = fw.run("block_ip", fw.args(*many))
        assert check.in_effect and 2 <= len(result.details["sessions"]) <= 20, result.details["sessions"]
        assert set(result.details["sessions_cleared"]) == set(many)

    def test_refused_command_reports_exit_status(self, fw: Fw) -> None:
        """A request containing an existing entry is refused before nft would fail with 'interval overlaps'."""
        from connectors.errors import Rejected

        fw.run("block_ip", fw.args(ATTACKER))
        with pytest.raises(Rejected, match="overlaps"):
            fw.run("block_ip", fw.args("10.77.1.128/25"))
        assert fw.path_state() == "blocked"


class TestLinuxPreviewExact:
    @pytest.mark.parametrize("populated", [False, True], ids=["empty", "populated"])
    def test_preview_equals_sent(self, fw: Fw, populated: bool) -> None:
        """The real router: the preview from the resolve step's facts is exactly what is sent (finding 7)."""
        if populated:
            fw.run("block_ip", fw.args("45.35.1.1"))
        args = fw.args(ATTACKER, "45.33.7.9")
        fw.conn.validate(fw.target, "block_ip", args)
        with fw.lab.enter("mgmt"), fw.conn.open(fw.target, fw.creds, fw.ctx) as s:
            facts = fw.conn.resolve(s, "block_ip", args)
            preview = fw.conn.preview(fw.target, "block_ip", args, fw.ctx, facts=facts)
            result = fw.conn.apply(s, "block_ip", args, fw.conn.snapshot(s, "block_ip", args))
        assert preview == result.details["applied_lines"] + result.details["persist"] + result.details["sessions"]
        assert any(ln.startswith("nft add element") for ln in preview)
        assert any(ln.startswith("nft add table") for ln in preview) is not populated


class TestLinuxOwnAddresses:
    def test_other_interface_address_is_refused(self, fw: Fw) -> None:
        """The router's other interface addresses (read with ``ip -o addr``) are never blocked (finding 8)."""
        import re as _re
        out = fw.lab.exec("fw", ["ip", "-o", "-4", "addr", "show"]).stdout
        others = [a for a in _re.findall(r"inet (\S+)/\d+", out) if a not in (fw.target.address, "127.0.0.1")]
        assert others, out
        from connectors.errors import InvalidInput
        with pytest.raises(InvalidInput, match="own address"):
            fw.run("block_ip", fw.args(others[0]))
        listing = fw.lab.exec("fw", ["nft", "list", "tables"]).stdout
        assert "ir_block" not in listing
