"""A release on a host whose ruleset someone else changed while it was contained.

fail2ban, Docker and Kubernetes add and remove their own rules all the time. Found this session after the
undo-in-parts change (2706948): a host contained, fail2ban banning one address meanwhile (a table of its own),
then `agent release --host victim` — every containment rule gone, the host open again — answered "in doubt",
exit 4, and `agent status` went on listing victim as *isolated*. Lines the snapshot did not have, with every part
of the containment removed, cannot come from the release (it only deletes): the release is done and says what
was added meanwhile. A line the snapshot had that is now missing is still not trusted (the release might have
deleted it): in doubt, re-verified, as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.lab import Lab
from tests.integration.cli import test_contain_cli as contain_cli
from tests.integration.cli.test_contain_cli import agent, ruleset

pytestmark = pytest.mark.root

cfg = contain_cli.cfg  # a private copy of the lab's configuration (fixture)

F2B = ("add table inet f2b; add chain inet f2b input { type filter hook input priority -1; }; "
       "add rule inet f2b input ip saddr 203.0.113.9 drop")


def test_rules_added_by_others_while_contained_do_not_make_the_release_doubtful(clean_lab: Lab, cfg: Path):
    lab = clean_lab
    res = agent(lab, cfg, "contain", "--host", "victim", "--yes", "-p", "capture_evidence=false")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "victim" in [a["target"] for a in json.loads(agent(lab, cfg, "status", "--json").stdout)["active"]]
    try:
        lab.exec("victim", ["nft", F2B])  # fail2ban bans an address while the host is contained
        res = agent(lab, cfg, "release", "--host", "victim", "--yes", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        out = json.loads(res.stdout)
        assert out["status"] == "done", out
        release = out["outcomes"][0]
        assert release["state"] == "done"
        assert any("203.0.113.9" in w and "did not add" in w for w in release["warnings"]), release
        assert "containment_agent" not in ruleset(lab, "victim")
        status = agent(lab, cfg, "status", "--json")
        active = json.loads(status.stdout)["active"]
        assert not [a for a in active if a.get("target") == "victim"], status.stdout
    finally:
        lab.exec("victim", ["nft", "delete table inet f2b"])
