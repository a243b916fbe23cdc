"""What a responder sees (issue 14): ``agent contain --param survive_reboot=true`` on a host whose inventory entry
names a probe vantage point (``options.probe_from``) — the plan says the isolation survives a reboot, the journal
keeps the outside probe with the verification and the counsel report shows it, the host comes back isolated after
a reboot, and ``agent release`` leaves it open after the next one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.lab import Lab
from tests.integration.ssh_linux.helpers import cli_config, rows, run_agent
from tests.integration.ssh_linux.test_reboot import boot, check, isolated, open_

pytestmark = pytest.mark.root


def test_contain_survive_reboot_with_outside_probe(clean_lab: Lab, tmp_path: Path) -> None:
    lab = clean_lab
    cfg = cli_config(lab, tmp_path)
    inventory = tmp_path / "inventory.yaml"
    text = inventory.read_text()
    victim = f'  victim:\n    address: "{lab.hosts["victim"].address}"\n'
    assert victim in text
    inventory.write_text(text.replace(victim, victim + f'    options: {{probe_from: "{lab.hosts["peer"].address}"}}\n'))
    args = ("--host", "victim", "--param", "survive_reboot=true", "--param", "capture_evidence=false")
    try:
        plan = run_agent(lab, cfg, "contain", *args, "--dry-run")
        assert plan.returncode == 0, plan.stdout + plan.stderr
        assert "survives a reboot" in plan.stdout and "proof from outside" in plan.stdout, plan.stdout
        res = run_agent(lab, cfg, "contain", *args, "--yes")
        assert res.returncode == 0, res.stdout + res.stderr
        assert rows(lab, check("victim")) == isolated("victim")

        shown = run_agent(lab, cfg, "status", "--json")
        [active] = [a for a in json.loads(shown.stdout)["active"] if a["action"] == "isolate"]
        incident = active["incident"]
        doc = json.loads(run_agent(lab, cfg, "incidents", "show", incident, "--json").stdout)
        [action] = [a for a in doc["actions"] if a["action"] == "isolate"]
        probe = action["verification"]["observed"]["outside_probe"]
        assert probe["from"] == lab.hosts["peer"].address, probe
        assert probe["ports"] == {"8080": "blocked", "22": "blocked"}, probe
        assert action["verification"]["observed"]["survives_reboot"] is True
        assert "time out" in action["verification"]["summary"]
        report = tmp_path / "r.json"
        made = run_agent(lab, cfg, "report", "--incident", incident, "--format", "json", "-o", str(report))
        assert made.returncode == 0, made.stdout + made.stderr
        proof = f"from {lab.hosts['peer'].address} tcp/8080,22 time out"
        assert proof in report.read_text(), "the counsel report does not show the outside probe"

        lab.reboot("victim")
        assert rows(lab, check("victim")) == open_("victim")
        assert boot(lab, "victim")
        assert rows(lab, check("victim")) == isolated("victim")
        verified = run_agent(lab, cfg, "status", "--verify", "--json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        [after_boot] = json.loads(verified.stdout)["verified"]
        assert after_boot["state"] == "in_effect" and "time out" in after_boot["summary"], after_boot

        res = run_agent(lab, cfg, "release", "--host", "victim", "--yes")
        assert res.returncode == 0 and "boot unit containment-agent-isolation.service removed" in res.stdout, \
            res.stdout + res.stderr
        lab.reboot("victim")
        assert boot(lab, "victim") == []
        assert rows(lab, check("victim")) == open_("victim")
    finally:
        run_agent(lab, cfg, "release", "--host", "victim", "--yes")
