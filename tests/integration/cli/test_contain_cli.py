"""`agent contain` / `agent release` as a responder runs them: whole processes, from the lab's mgmt host,
against real sshd hosts with real nftables/iptables. Effects are proven with the probe matrix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agent.lab import Lab

pytestmark = pytest.mark.root
REPO = Path(__file__).resolve().parents[3]
AGENT = str(REPO / ".venv" / "bin" / "agent")


@pytest.fixture
def cfg(clean_lab: Lab, tmp_path: Path) -> Path:
    """A private copy of the lab's configuration (own journal and audit log per test)."""
    src = clean_lab.config_dir
    inv = (src / "inventory.yaml").read_text()
    (tmp_path / "inventory.yaml").write_text(inv)
    text = (src / "agent.yaml").read_text()
    state = str(clean_lab.state_dir)
    text = text.replace(f'"{state}/agent.db"', f'"{tmp_path}/agent.db"')
    text = text.replace(f'"{state}/audit"', f'"{tmp_path}/audit"')
    text = text.replace(f'"{state}/evidence"', f'"{tmp_path}/evidence"')
    text = text.replace(f'"{src}/inventory.yaml"', f'"{tmp_path}/inventory.yaml"')
    (tmp_path / "agent.yaml").write_text(text)
    assert str(tmp_path / "agent.db") in text and str(tmp_path / "inventory.yaml") in text
    return tmp_path / "agent.yaml"


def agent(lab: Lab, cfg: Path, *args: str, env: dict[str, str] | None = None,
          timeout: float = 90) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "AGENT_CONFIG": str(cfg), "NO_COLOR": "1", **(env or {})}
    return subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-mgmt", AGENT, *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, stdin=subprocess.DEVNULL, check=False)


def ruleset(lab: Lab, host: str) -> str:
    return lab.exec(host, ["nft", "list", "ruleset"]).stdout


def iptables_state(lab: Lab, host: str) -> str:
    """iptables-save of both families, normalised (counters; empty all-ACCEPT tables equal absent ones)."""
    from connectors.ssh_linux.state import normalise
    return normalise(lab.exec(host, ["iptables-save"]).stdout + lab.exec(host, ["ip6tables-save"]).stdout)


def victim_rows(result) -> dict[str, str]:
    return {k: v for k, v in result.as_dict().items() if "victim" in k}


class TestContainVictim:
    def test_isolate_and_release_round_trip(self, clean_lab: Lab, cfg: Path):
        """Only mgmt→victim:22 stays open, a pre-opened attacker session dies, release restores the baseline."""
        lab = clean_lab
        baseline_rules = ruleset(lab, "victim")
        baseline = lab.probe()
        assert baseline.all_open()
        live = lab.open_session("attacker", "victim", 8080)
        assert live.alive()
        res = agent(lab, cfg, "contain", "--host", "victim", "--reason", "test", "--yes", "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        out = json.loads(res.stdout)
        assert out["status"] == "done"
        after = lab.probe()
        rows = victim_rows(after)
        assert [k for k, v in rows.items() if v == "open"] == ["mgmt->victim:22"], after.render()
        assert after.state("mgmt", "peer", 8080) == "open"  # the rest of the network is untouched
        assert not live.alive(), "the attacker's established connection survived isolation"
        live.close()
        res = agent(lab, cfg, "release", "--host", "victim", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert lab.probe().as_dict() == baseline.as_dict()
        assert ruleset(lab, "victim") == baseline_rules

    def test_second_contain_is_noop_and_release_twice_is_noop(self, clean_lab: Lab, cfg: Path):
        """A second contain changes nothing; releasing a host that is not isolated is a clear no-op."""
        lab = clean_lab
        assert agent(lab, cfg, "contain", "--host", "victim", "-p", "capture_evidence=false", "--yes").returncode == 0
        contained_rules = ruleset(lab, "victim")
        res = agent(lab, cfg, "contain", "--host", "victim", "-p", "capture_evidence=false", "--yes", "--json")
        assert res.returncode == 0
        outcome = json.loads(res.stdout)["outcomes"][0]
        assert outcome["changed"] is False and "already isolated" in outcome["summary"]
        assert ruleset(lab, "victim") == contained_rules
        assert agent(lab, cfg, "release", "--host", "victim", "--yes").returncode == 0
        res = agent(lab, cfg, "release", "--host", "victim", "--yes")
        assert res.returncode == 0 and "nothing to undo" in res.stdout

    def test_legacy_host_uses_iptables(self, clean_lab: Lab, cfg: Path):
        """A host without nft is isolated and released through iptables, restoring the exact rules."""
        lab = clean_lab
        before = iptables_state(lab, "legacy")
        res = agent(lab, cfg, "contain", "--host", "legacy", "-p", "capture_evidence=false", "--yes", "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        probe = lab.probe()
        assert probe.state("mgmt", "legacy", 22) == "open"
        assert probe.state("attacker", "legacy", 8080) == "blocked"
        assert probe.state("legacy", "peer", 8080) == "blocked"
        assert "CAGENT_IN" in iptables_state(lab, "legacy")
        assert agent(lab, cfg, "release", "--host", "legacy", "--yes").returncode == 0
        assert iptables_state(lab, "legacy") == before
        assert lab.probe().state("attacker", "legacy", 8080) == "open"


class TestRefusals:
    def test_protected_host_refused_without_any_connection(self, clean_lab: Lab, cfg: Path):
        """A protected host is refused before any TCP connection is opened (counted by nft on the target)."""
        lab = clean_lab
        inv = cfg.parent / "inventory.yaml"
        inv.write_text(inv.read_text().replace('"hosts": ["mgmt"]', '"hosts": ["mgmt", "peer"]')
                       .replace('hosts: ["mgmt"]', 'hosts: ["mgmt", "peer"]'))
        assert "peer" in inv.read_text().split("protected")[1].split("\n")[1]
        lab.exec("peer", ["nft", "-f", "-"], input=(
            "table inet cnt {\n  counter syn_count {\n  }\n  chain input {\n"
            "    type filter hook input priority -50;\n    tcp dport 22 counter name \"syn_count\"\n  }\n}\n"))
        res = agent(lab, cfg, "contain", "--host", "peer", "--yes")
        assert res.returncode == 3, res.stderr + res.stdout
        assert "protected" in res.stderr
        counter = lab.exec("peer", ["nft", "list", "counter", "inet", "cnt", "syn_count"]).stdout
        assert "packets 0" in counter, counter
        lab.exec("peer", ["nft", "delete", "table", "inet", "cnt"])

    def test_changed_host_key_refused(self, clean_lab: Lab, cfg: Path, tmp_path: Path):
        """A host key that differs from the pinned one is refused and nothing is applied."""
        lab = clean_lab
        kh = tmp_path / "known_hosts"
        wrong = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")],
                               capture_output=True, check=False)
        assert wrong.returncode == 0
        pub = (tmp_path / "k.pub").read_text().split()[:2]
        kh.write_text(f"10.77.0.20 {pub[0]} {pub[1]}\n")
        text = cfg.read_text().replace(f'"{lab.state_dir}/known_hosts"', f'"{kh}"')
        cfg.write_text(text)
        res = agent(lab, cfg, "contain", "--host", "victim", "-p", "capture_evidence=false", "--yes")
        assert res.returncode == 3, res.stderr + res.stdout
        assert "host key" in (res.stdout + res.stderr).lower()
        assert "containment" not in ruleset(lab, "victim")

    def test_unreachable_host_bounded_retries_and_audited(self, clean_lab: Lab, cfg: Path):
        """An unreachable host fails after bounded retries with a clear error, recorded in the audit log."""
        lab = clean_lab
        inv = cfg.parent / "inventory.yaml"
        import yaml
        data = yaml.safe_load(inv.read_text())
        data["hosts"]["ghost"] = {"address": "10.77.0.99", "os": "linux", "credentials": {
            "username": "root", "private_key": f"file:{lab.state_dir}/agent_key"}}
        inv.write_text(yaml.safe_dump(data))
        cfg.write_text(cfg.read_text().replace('"backoff": 0.5', '"backoff": 0.1').replace(
            "backoff: 0.5", "backoff: 0.1").replace('"connect_timeout": 5', '"connect_timeout": 1').replace(
            "connect_timeout: 5", "connect_timeout: 1"))
        start = time.monotonic()
        res = agent(lab, cfg, "contain", "--host", "ghost", "-p", "capture_evidence=false", "--yes", "--json")
        took = time.monotonic() - start
        assert res.returncode == 1, res.stderr + res.stdout
        out = json.loads(res.stdout)
        assert out["outcomes"][0]["error_kind"] in ("unreachable", "timeout")
        assert took < 30
        audit = "".join(p.read_text() for p in sorted((cfg.parent / "audit").glob("*.jsonl")))
        assert '"action.failed"' in audit and "ghost" in audit

    @pytest.mark.parametrize("host", ["victim;reboot", "vic tim", "../victim", "$(id)"])
    def test_malformed_host_names(self, clean_lab: Lab, cfg: Path, host: str):
        """Malformed host names are rejected with exit 2 and nothing applied."""
        res = agent(clean_lab, cfg, "contain", "--host", host, "--yes")
        assert res.returncode == 2 and "host" in res.stderr
        assert "containment" not in ruleset(clean_lab, "victim")

    def test_broken_config_names_file_and_line(self, clean_lab: Lab, cfg: Path):
        """A malformed inventory stops the run with file:line and field."""
        inv = cfg.parent / "inventory.yaml"
        inv.write_text(inv.read_text().replace('"10.77.0.20"', '"10.77.0.2000"'))
        res = agent(clean_lab, cfg, "contain", "--host", "victim", "--yes")
        assert res.returncode == 2
        assert f"{inv}:" in res.stderr and "address" in res.stderr and "10.77.0.2000" in res.stderr

    def test_no_confirmation_without_tty(self, clean_lab: Lab, cfg: Path):
        """Without --yes and without a terminal the agent refuses to act."""
        res = agent(clean_lab, cfg, "contain", "--host", "victim")
        assert res.returncode == 3 and "--yes" in res.stderr
        assert "containment" not in ruleset(clean_lab, "victim")


class TestCrashRecovery:
    def test_sigkill_between_apply_and_verify(self, clean_lab: Lab, cfg: Path):
        """The agent killed right after apply leaves a journal the next run reconciles: contained exactly once."""
        lab = clean_lab
        res = agent(lab, cfg, "contain", "--host", "victim", "-p", "capture_evidence=false", "--yes",
                    env={"AGENT_FAILPOINTS": "after-apply"})
        assert res.returncode == -signal.SIGKILL
        status = json.loads(agent(lab, cfg, "status", "--json").stdout)
        assert [a["state"] for a in status["unfinished"]] == ["applying"]
        assert "containment" in ruleset(lab, "victim")
        # the next run reconciles first; releasing it proves there is exactly one containment to undo
        res = agent(lab, cfg, "release", "--host", "victim", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert "reconciled isolate on victim" in res.stdout and "not re-applied" in res.stdout
        assert "containment" not in ruleset(lab, "victim")
        incidents = json.loads(agent(lab, cfg, "incidents", "list", "--json").stdout)
        show = json.loads(agent(lab, cfg, "incidents", "show", incidents[-1]["id"], "--json").stdout)
        isolate = [a for a in show["actions"] if a["action"] == "isolate" and a["kind"] == "apply"]
        assert len(isolate) == 1 and isolate[0]["state"] == "done"
        assert any("reconciled" in t["detail"] for t in isolate[0]["transitions"])
        audit = "".join(p.read_text() for p in sorted((cfg.parent / "audit").glob("*.jsonl")))
        assert "reconcile.start" in audit


class TestAuditTrail:
    def test_verify_passes_then_detects_tampering(self, clean_lab: Lab, cfg: Path):
        """`agent audit verify` passes on a real log and fails (exit 5) on an edited or deleted record."""
        lab = clean_lab
        assert agent(lab, cfg, "contain", "--host", "victim", "-p", "capture_evidence=false", "--yes").returncode == 0
        assert agent(lab, cfg, "release", "--host", "victim", "--yes").returncode == 0
        res = agent(lab, cfg, "audit", "verify")
        assert res.returncode == 0, res.stdout + res.stderr
        seg = min((cfg.parent / "audit").glob("*.jsonl"))
        lines = seg.read_text().splitlines(keepends=True)
        backup = list(lines)
        idx = next(i for i, line in enumerate(lines) if '"action.done"' in line)
        lines[idx] = lines[idx].replace('"victim"', '"peer"', 1)
        seg.write_text("".join(lines))
        res = agent(lab, cfg, "audit", "verify")
        assert res.returncode == 5 and str(idx + 1) in res.stdout + res.stderr
        del backup[idx]
        seg.write_text("".join(backup))
        assert agent(lab, cfg, "audit", "verify").returncode == 5


class TestInterrupt:
    def test_ctrl_c_leaves_a_consistent_journal(self, clean_lab: Lab, cfg: Path):
        """Ctrl-C mid-run exits 130 (or finishes); afterwards the journal agrees with every host's real rules."""
        lab = clean_lab
        env = {**os.environ, "AGENT_CONFIG": str(cfg), "NO_COLOR": "1", "AGENT_FAILPOINTS": "after-apply:pause"}
        proc = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-mgmt", AGENT, "contain", "--host", "victim",
                                 "--host", "peer", "--host", "legacy", "--yes"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 20  # wait until a host is applied and the run pauses right after it
        while "containment" not in ruleset(lab, "victim") + ruleset(lab, "peer") and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, out + err
        assert "journal is consistent" in err
        # the next run reconciles whatever was left mid-way, then nothing stays unfinished
        assert agent(lab, cfg, "sweep", "--yes").returncode == 0
        status = json.loads(agent(lab, cfg, "status", "--json").stdout)
        assert status["unfinished"] == []
        contained = {a["target"] for a in status["active"] if a["action"] == "isolate"}
        for host in ("victim", "peer"):
            assert ("containment" in ruleset(lab, host)) == (host in contained), host
        assert ("CAGENT_IN" in iptables_state(lab, "legacy")) == ("legacy" in contained)
        for host in contained:
            assert agent(lab, cfg, "release", "--host", host, "--yes").returncode == 0


class TestVerifyDrift:
    def test_status_verify_reports_a_table_deleted_behind_the_agents_back(self, clean_lab: Lab, cfg: Path):
        """victim and peer isolated; an admin deletes victim's isolation table by hand: `status --verify` reads
        both hosts now, names victim as drifted and exits 4; peer stays confirmed in effect."""
        from connectors.ssh_linux.rules import TABLE
        lab = clean_lab
        res = agent(lab, cfg, "contain", "--host", "victim,peer", "--reason", "test", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        res = agent(lab, cfg, "status", "--verify")
        assert res.returncode == 0, res.stderr + res.stdout
        lab.exec("victim", ["nft", "delete", "table", *TABLE.split()])
        res = agent(lab, cfg, "status", "--verify", "--json")
        assert res.returncode == 4, res.stderr + res.stdout
        states = {c["target"]: c["state"] for c in json.loads(res.stdout)["verified"]}
        assert states == {"victim": "drift", "peer": "in_effect"}
        res = agent(lab, cfg, "status", "--verify")
        assert res.returncode == 4 and "DRIFT" in res.stdout and "victim" in res.stdout
        assert agent(lab, cfg, "release", "--host", "victim,peer", "--yes").returncode == 0


class TestStatusProof:
    def test_status_shows_proof_and_the_drift_status_verify_found(self, clean_lab: Lab, cfg: Path):
        """Issue 21: after contain, plain `status` shows each host verified by the run, its dead-man timer
        confirmed and cancelled, and its TTL; an admin deletes victim's table; `status --verify` exits 4 and the
        next plain `status` shows victim DRIFT and peer in effect, both read back by --verify — at 120 columns."""
        from connectors.ssh_linux.rules import TABLE
        lab = clean_lab
        narrow = {"COLUMNS": "120"}
        res = agent(lab, cfg, "contain", "--host", "victim,peer", "--ttl", "2h", "--reason", "test", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        res = agent(lab, cfg, "status", env=narrow)
        assert res.returncode == 0, res.stderr + res.stdout
        rows = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.split()[:1] in (["victim"], ["peer"])}
        for host in ("victim", "peer"):
            assert "in effect" in rows[host] and "(run)" in rows[host], res.stdout
            assert "confirmed, cancelled" in rows[host] and ("in 1h59m" in rows[host] or "in 2h" in rows[host])
        assert max(len(ln) for ln in res.stdout.splitlines()) <= 120, res.stdout
        lab.exec("victim", ["nft", "delete", "table", *TABLE.split()])
        res = agent(lab, cfg, "status", "--verify", env=narrow)
        assert res.returncode == 4, res.stderr + res.stdout
        res = agent(lab, cfg, "status", env=narrow)
        rows = {ln.split()[0]: ln for ln in res.stdout.splitlines() if ln.split()[:1] in (["victim"], ["peer"])}
        assert "DRIFT" in rows["victim"] and "(verify)" in rows["victim"], res.stdout
        assert "in effect" in rows["peer"] and "(verify)" in rows["peer"], res.stdout
        assert "Not in effect at the last read-back: victim —" in res.stdout
        assert max(len(ln) for ln in res.stdout.splitlines()) <= 120, res.stdout
        proof = {a["target"]: a for a in json.loads(agent(lab, cfg, "status", "--json").stdout)["active"]}
        assert proof["victim"]["last_verified"]["result"] == "drift"
        assert proof["peer"]["timer"]["state"] == "cancelled" and proof["peer"]["ttl"]["overdue"] is False
        assert agent(lab, cfg, "release", "--host", "victim,peer", "--yes").returncode == 0
