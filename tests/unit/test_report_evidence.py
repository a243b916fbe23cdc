"""Evidence for counsel: auth-log capture that sees OpenSSH >= 9.8 logins, failures marked, custody = the target."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from agent.audit import AuditLog, records
from agent.evidence import read_manifest, store_evidence
from connectors.ssh_linux.evidence import COMMANDS

# A journalctl double. Documented behaviour modelled (journalctl(1)): `-t/--identifier=ID` matches
# SYSLOG_IDENTIFIER and may be given several times (ORed); `FIELD=value` matches a journal field; -q, -n N and
# --no-pager take no part in selection. On OpenSSH >= 9.8 (Debian 13, RHEL 10) the per-connection process that
# logs "Accepted publickey" is sshd-session (OpenSSH 9.8 release notes), so its _COMM is "sshd-session"; the
# listener `sshd` only logs start-up lines.
FAKE_JOURNALCTL = r'''#!/usr/bin/env python3
import sys
entries = [
    {"_COMM": "sshd", "SYSLOG_IDENTIFIER": "sshd", "MESSAGE": "Server listening on 0.0.0.0 port 22."},
    {"_COMM": "sshd-session", "SYSLOG_IDENTIFIER": "sshd-session",
     "MESSAGE": "Accepted publickey for mallory from 203.0.113.66 port 51514 ssh2"},
    {"_COMM": "cron", "SYSLOG_IDENTIFIER": "CRON", "MESSAGE": "pam_unix(cron:session): session opened"},
]
args, idents, fields = sys.argv[1:], [], {}
i = 0
while i < len(args):
    a = args[i]
    if a in ("-t", "--identifier"):
        idents.append(args[i + 1]); i += 2; continue
    if a.startswith("--identifier="):
        idents.append(a.split("=", 1)[1])
    elif a == "-n":
        i += 2; continue
    elif "=" in a and not a.startswith("-"):
        k, v = a.split("=", 1); fields[k] = v
    elif a not in ("-q", "--no-pager"):
        print(f"journalctl: unrecognized option '{a}'", file=sys.stderr); sys.exit(1)
    i += 1
for e in entries:
    if idents and e["SYSLOG_IDENTIFIER"] not in idents:
        continue
    if any(e.get(k) != v for k, v in fields.items()):
        continue
    print(e["SYSLOG_IDENTIFIER"] + ": " + e["MESSAGE"])
'''


def test_auth_log_sees_sshd_session_logins(tmp_path: Path) -> None:
    """The capture selects by syslog identifier, so an OpenSSH 9.8 login (logged by sshd-session) is in it."""
    fake = tmp_path / "bin" / "journalctl"
    fake.parent.mkdir()
    fake.write_text(FAKE_JOURNALCTL)
    fake.chmod(0o755)
    done = subprocess.run(["/bin/sh", "-c", COMMANDS["auth_log.txt"]], capture_output=True, text=True,
                          env={"PATH": f"{fake.parent}:/usr/bin:/bin"}, timeout=30, check=False)
    assert "Accepted publickey for mallory" in done.stdout, (done.stdout, done.stderr)
    assert done.stdout.startswith("# journalctl") and "CRON" not in done.stdout


def test_failed_capture_is_not_stored_as_evidence(tmp_path: Path) -> None:
    """A failed, empty capture is audited as evidence.failed, no 0-byte file; a partial one is marked partial."""
    with AuditLog(tmp_path / "audit") as log:
        items = store_evidence(tmp_path / "ev", "INC-1", "victim",
                               {"processes.txt": "PID CMD\n1 init\n", "auth_log.txt": "",
                                "firewall.txt": "# nft list ruleset\ntable inet f {"},
                               log, collected_by="runbook:isolate-host", source="ssh_linux://victim (10.0.0.5)",
                               failures={"auth_log.txt": "exit 1: no journald sshd entries and no auth log file",
                                         "firewall.txt": "not finished within the 9.5 s evidence budget"},
                               collector_host="agent-01")
    assert sorted((i.name, i.status) for i in items) == [("firewall.txt", "partial"), ("processes.txt", "captured")]
    assert not any(p.name == "auth_log.txt" for p in (tmp_path / "ev").rglob("*"))
    recs = list(records(tmp_path / "audit", "INC-1"))
    failed = [r for r in recs if r["event"] == "evidence.failed"]
    assert len(failed) == 1 and failed[0]["original_name"] == "auth_log.txt" and "exit 1" in failed[0]["error"]
    stored = {r["original_name"]: r for r in recs if r["event"] == "evidence.stored"}
    assert stored["firewall.txt"]["status"] == "partial" and "budget" in stored["firewall.txt"]["error"]
    # chain of custody: the source is the target; the collector's host is recorded separately
    assert {r["source"] for r in stored.values()} == {"ssh_linux://victim (10.0.0.5)"}
    assert {r["collector_host"] for r in stored.values()} == {"agent-01"}
    manifest = json.loads((tmp_path / "ev" / "INC-1" / "MANIFEST.json").read_text())
    assert {row["status"] for row in manifest["items"]} == {"captured", "partial"}
    assert len(read_manifest(tmp_path / "ev", "INC-1")) == 2


def test_app_evidence_source_is_the_target(tmp_path: Path) -> None:
    """The app hands store_evidence the target's connector, name and address, not the collector's host name."""
    from agent.app import App

    (tmp_path / "inventory.yaml").write_text(
        "hosts:\n  victim:\n    address: 10.0.0.5\n    os: linux\n")
    (tmp_path / "agent.yaml").write_text("inventory: inventory.yaml\n")
    app = App(config_path=str(tmp_path / "agent.yaml"))
    try:
        assert app._evidence_source("victim") == "ssh_linux://victim (10.0.0.5)"
    finally:
        app.close()


def test_engine_audits_a_capture_that_failed_entirely(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Through the real engine: a capture with no output at all is audited as evidence.failed per file, with the
    target as source — never silently dropped, never a 0-byte file."""
    from agent.runbook import find_runbook
    from connectors.types import ActionResult
    from tests.unit.engine_env import make_env
    from tests.unit.fake_connector import FakeConnector

    def failed_capture(self, s, args, snap):  # type: ignore[no-untyped-def]
        return ActionResult(changed=False, summary="captured 0/1 evidence files",
                            details={"evidence": {}, "errors": {"auth_log.txt": "exit 1: no auth log file"}})

    monkeypatch.setattr(FakeConnector, "_apply_capture_evidence", failed_capture)
    app, _ = make_env(tmp_path)
    try:
        plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web2"], {})
        engine = app.engine()
        engine.journal.open_incident("INC-E", title="t", reason="r", requested_by=app.actor, trigger="cli")
        engine.execute(plan, "INC-E")
        failed = [r for r in records(app.settings.audit_dir, "INC-E") if r["event"] == "evidence.failed"]
    finally:
        app.close()
    assert len(failed) == 1 and failed[0]["original_name"] == "auth_log.txt"
    assert failed[0]["source"] == "ssh_linux://web2 (10.9.0.22)"
    assert not (tmp_path / "var" / "evidence" / "INC-E").exists() or not any(
        p.is_file() and p.stat().st_size == 0 for p in (tmp_path / "var" / "evidence" / "INC-E").rglob("*"))
