"""Targets reachable only through a bastion (issue 14: ProxyJump chains with pinned bastion keys). The lab's
``dmz`` host sits on its own link behind ``fw`` with no route beyond it, so mgmt cannot reach it directly; the
agent goes through fw like ``ssh -J``. Effects are proven from fw (the only host that reaches dmz)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.lab import Lab
from connectors.errors import HostKeyError, Unreachable
from connectors.ssh_linux import SshSession
from connectors.types import Credentials, Hop, Target
from tests.integration.ssh_linux.helpers import Agent, cli_config, nft_ruleset, rows, run_agent

pytestmark = pytest.mark.root
ROWS = [("fw", "dmz", 22), ("fw", "dmz", 8080)]


def host_key(lab: Lab, host: str) -> str:
    return " ".join((lab.host_dir(host) / "ssh_host_ed25519_key.pub").read_text().split()[:2])


def open_via_bastion(agent: Agent, bastion_key: str | None = None) -> SshSession:
    lab = agent.lab
    hop = Hop("bastion", lab.hosts["fw"].address, 22, bastion_key or host_key(lab, "fw"), "root")
    target = Target("dmz", "host", lab.hosts["dmz"].address, "ssh_linux", jump=(hop,))
    creds = Credentials("root", private_key_path=str(lab.agent_key), hops=(agent.creds,))
    with lab.enter("mgmt"):
        return agent.conn.open(target, creds, agent.ctx)


class TestThroughBastion:
    def test_not_reachable_directly(self, agent: Agent) -> None:
        """The premise: from mgmt, dmz does not answer at all."""
        quick = Agent(agent.lab, connect_timeout=1.5)
        with pytest.raises(Unreachable):
            quick.open("dmz")

    def test_contain_verify_release_through_the_bastion(self, agent: Agent) -> None:
        """Isolated through fw: only fw's address on tcp/22 stays open (the address dmz sees the agent as),
        verified, released to the exact ruleset; a fresh login through the bastion confirmed it."""
        lab = agent.lab
        before, baseline = nft_ruleset(lab, "dmz"), rows(lab, ROWS)
        assert set(baseline.values()) == {"open"}
        with open_via_bastion(agent) as s:
            snap, result, check = agent.isolate(s)
            assert result.changed and check.in_effect, (result, check)
            assert result.details["deadman"]["cancelled"] is True
            assert "10.77.2.1" in result.details["management"]
            assert rows(lab, ROWS) == {"fw->dmz:22": "open", "fw->dmz:8080": "blocked"}
            undo, after = agent.release(s, snap)
            assert undo.changed and not after.in_effect
        assert nft_ruleset(lab, "dmz") == before and rows(lab, ROWS) == baseline

    def test_wrong_bastion_key_is_refused(self, agent: Agent) -> None:
        """A bastion presenting a key other than the pinned one is refused before any credential is offered
        to it, and nothing reaches dmz."""
        before = nft_ruleset(agent.lab, "dmz")
        with pytest.raises(HostKeyError, match="CHANGED|unknown"):
            open_via_bastion(agent, bastion_key=host_key(agent.lab, "peer"))
        assert nft_ruleset(agent.lab, "dmz") == before

    def test_cli_contain_and_release_from_the_inventory(self, clean_lab: Lab, tmp_path: Path) -> None:
        """`agent contain --host dmz` with the lab's inventory (jump: [bastion], bastion key pinned there)."""
        cfg = cli_config(clean_lab, tmp_path)
        res = run_agent(clean_lab, cfg, "contain", "--host", "dmz", "--reason", "test", "--yes", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        assert json.loads(res.stdout)["status"] == "done"
        assert rows(clean_lab, ROWS) == {"fw->dmz:22": "open", "fw->dmz:8080": "blocked"}
        res = run_agent(clean_lab, cfg, "release", "--host", "dmz", "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert set(rows(clean_lab, ROWS).values()) == {"open"}
