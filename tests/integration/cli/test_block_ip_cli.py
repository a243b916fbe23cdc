"""`agent block-ip` / `unblock-ip` / `sweep` on the lab's real router, as a responder runs them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.lab import Lab
from tests.integration.cli.test_contain_cli import agent, cfg  # noqa: F401 - shared fixture and runner

pytestmark = pytest.mark.root
ATTACKER = "10.77.1.130"


class TestBlockIp:
    def test_block_ttl_sweep_round_trip(self, clean_lab: Lab, cfg: Path):  # noqa: F811
        """A block with a TTL drops the attacker, shows its expiry, and `sweep` lifts it once due."""
        lab = clean_lab
        res = agent(lab, cfg, "block-ip", ATTACKER, "--allow-private", "--ttl", "15s", "--reason", "C2", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert lab.probe().state("attacker", "victim", 8080) == "blocked"
        status = json.loads(agent(lab, cfg, "status", "--json").stdout)
        assert [a["action"] for a in status["active"]] == ["block_ip"] and status["active"][0]["expires_at"]
        res = agent(lab, cfg, "sweep", "--yes")
        assert res.returncode == 0 and "nothing is due" in res.stdout
        due = datetime.fromisoformat(status["active"][0]["expires_at"])
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.5)
        res = agent(lab, cfg, "sweep", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert lab.probe().state("attacker", "victim", 8080) == "open"
        assert json.loads(agent(lab, cfg, "status", "--json").stdout)["active"] == []

    def test_unblock_closes_block(self, clean_lab: Lab, cfg: Path):  # noqa: F811
        """unblock-ip lifts the block on the device and it no longer shows as contained."""
        lab = clean_lab
        assert agent(lab, cfg, "block-ip", ATTACKER, "--allow-private", "--yes").returncode == 0
        assert agent(lab, cfg, "block-ip", ATTACKER, "--allow-private", "--yes").returncode == 0  # no-op
        assert agent(lab, cfg, "unblock-ip", ATTACKER, "--yes").returncode == 0
        assert lab.probe().state("attacker", "victim", 8080) == "open"
        assert json.loads(agent(lab, cfg, "status", "--json").stdout)["active"] == []

    @pytest.mark.parametrize("addr,why", [("0.0.0.0/0", "0.0.0.0/0"), ("10.77.0.10", "management"),
                                          ("10.77.1.130\nreboot", "address"), ("10.77.1.130;reboot", "address")])
    def test_refused_before_connecting(self, clean_lab: Lab, cfg: Path, addr: str, why: str):  # noqa: F811
        """Dangerous or malformed addresses are refused with a clear error and nothing on the router changes."""
        before = clean_lab.exec("fw", ["nft", "list", "ruleset"]).stdout
        res = agent(clean_lab, cfg, "block-ip", addr, "--allow-private", "--yes")
        assert res.returncode in (2, 3) and why in res.stderr
        assert clean_lab.exec("fw", ["nft", "list", "ruleset"]).stdout == before


class TestBlockSeveral:
    def test_three_addresses_one_action_per_device_and_per_item_undo(self, clean_lab: Lab, cfg: Path):  # noqa: F811
        """`block-ip A B C`: one action on the router (one session, one nft transaction) with three items;
        `unblock-ip` of the attacker (spelled as a /32) lifts that item alone; status lists the other two."""
        lab = clean_lab
        others = ["100.64.9.1", "100.64.10.0/28"]
        res = agent(lab, cfg, "block-ip", ATTACKER, *others, "--allow-private", "--yes", "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        outcomes = json.loads(res.stdout)["outcomes"]
        assert [o["action"] for o in outcomes] == ["block_ip"]
        assert [i["requested"] for i in outcomes[0]["items"]] == [ATTACKER, *others]
        assert {i["state"] for i in outcomes[0]["items"]} == {"done"}
        assert lab.probe().state("attacker", "victim", 8080) == "blocked"
        res = agent(lab, cfg, "unblock-ip", f"{ATTACKER}/32", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert lab.probe().state("attacker", "victim", 8080) == "open"
        active = json.loads(agent(lab, cfg, "status", "--json").stdout)["active"]
        assert [[i["requested"] for i in a["items"]] for a in active] == [others]
        res = agent(lab, cfg, "unblock-ip", *others, "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert json.loads(agent(lab, cfg, "status", "--json").stdout)["active"] == []
