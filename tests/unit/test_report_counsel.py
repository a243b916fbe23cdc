"""Counsel report for a lab incident (isolate + block IP + disable AD account): content, HTML and PDF."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from unittest import mock

import pytest

from agent.audit import AuditLog, records, verify
from agent.evidence import store_evidence
from agent.report import AuditSummary, build_report, from_records

INCIDENT = "INC-2026-0042"
# Friday 20 Nov 2026 14:05 UTC = 09:05 in Boston.
DISCOVERED = "2026-11-20T14:05:00Z"
INVENTORY = {
    "victim": {"kind": "host", "address": "10.66.0.10", "tags": ["data:ssn", "data:financial_account",
                                                               "residents:MA=1200", "residents:WA=640"]},
    "bob": {"kind": "account", "data": ["credentials"], "residents": {"MA": None}},
    "edge-fw": {"kind": "device"},
}
FIXED_NOW = [dt.datetime(2026, 11, 20, 14, 20, 0, tzinfo=dt.UTC)]


def _fake_now() -> str:
    FIXED_NOW[0] += dt.timedelta(seconds=7)
    return FIXED_NOW[0].strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_lab_incident(audit_dir: Path, evidence_dir: Path, key: Path) -> None:
    """The audit records the engine writes for contain-compromised-host, with deterministic times."""
    FIXED_NOW[0] = dt.datetime(2026, 11, 20, 14, 20, 0, tzinfo=dt.UTC)
    with mock.patch("agent.audit.writer.utc_timestamp", _fake_now), \
            AuditLog(audit_dir, signing_key=key, actor="alice", checkpoint_every=10) as log:
        log.record("incident.opened", incident=INCIDENT, title="Ransomware beacon on victim",
                   reason="EDR alert: Cobalt Strike beacon to 203.0.113.66", requested_by="alice",
                   trigger="alert edr/crowdstrike sha256:9f2c…e1", discovered_at=DISCOVERED)
        plan = [
            {"action_id": "a1", "target": "victim", "connector": "ssh_linux", "action": "isolate",
             "summary": "nftables isolation keeping 10.66.0.1 → :22", "args": {"keep": ["10.66.0.1"]}},
            {"action_id": "a2", "target": "edge-fw", "connector": "firewall", "action": "block_ip",
             "args": {"ip": "203.0.113.66"}},
            {"action_id": "a3", "target": "bob", "connector": "active_directory", "action": "disable_account",
             "args": {"account": "bob"}},
        ]
        log.record("plan.created", incident=INCIDENT, actions=plan, requested_by="alice")
        store_evidence(evidence_dir, INCIDENT, "victim", {"processes.txt": "PID CMD\n4242 beacon\n",
                                                          "connections.txt": "tcp 10.66.0.10:5544 203.0.113.66:443"},
                       log, collected_by="runbook:isolate-host", source="ssh_linux://victim (10.66.0.10)")
        log.record("approval.granted", incident=INCIDENT, approver="carol", reason="confirmed beacon, contain now",
                   actor="carol")
        for spec in plan:
            for old, new in (("intent", "snapshot"), ("snapshot", "apply"), ("apply", "verify")):
                log.record("action.transition", incident=INCIDENT, action_id=spec["action_id"],
                           target=spec["target"], connector=spec["connector"], action=spec["action"],
                           from_state=old, to_state=new, detail=None)
            verification = {"isolate": "only 10.66.0.1 → victim:22 reachable (probe from victim)",
                            "block_ip": "203.0.113.66 in deny list on edge-fw",
                            "disable_account": "userAccountControl has ACCOUNTDISABLE; sessions revoked"}
            log.record("action.done", incident=INCIDENT, action_id=spec["action_id"], target=spec["target"],
                       connector=spec["connector"], action=spec["action"],
                       summary={"isolate": "ruleset replaced (snapshot kept for undo)",
                                "block_ip": "deny 203.0.113.66/32 added", "disable_account": "account bob disabled",
                                }[spec["action"]], verification=verification[spec["action"]],
                       password="should-not-appear")
        log.record("action.failed", incident="INC-OTHER", action_id="x", target="other", action="isolate",
                   error="unrelated")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from agent.audit.keys import generate_keypair

    base = tmp_path_factory.mktemp("report")
    public, _ = generate_keypair(base / "audit.key")
    write_lab_incident(base / "audit", base / "evidence", base / "audit.key")
    return {"base": base, "audit": base / "audit", "public": public}


@pytest.fixture(scope="module")
def report(lab: dict[str, Path]):  # type: ignore[no-untyped-def]
    summary = AuditSummary.from_verify(verify(lab["audit"], public_key=lab["public"]))
    data = from_records(records(lab["audit"], INCIDENT), INCIDENT, INVENTORY, timezone="America/New_York",
                        audit=summary, organisation="Example Dental Group LLC")
    return build_report(data, generated_at=dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC))


class TestReportData:
    def test_data_built_from_audit_records(self, report) -> None:  # type: ignore[no-untyped-def]
        """Discovery, containment, every action, approvals and scope come out of the audit records alone."""
        d = report.data
        assert d.discovered_at == dt.datetime(2026, 11, 20, 14, 5, tzinfo=dt.UTC)
        assert d.containment_complete and d.contained_at is not None and d.contained_at > d.discovered_at
        assert [(a.target, a.action, a.status) for a in d.actions] == [
            ("victim", "isolate", "done"), ("edge-fw", "block_ip", "done"), ("bob", "disable_account", "done")]
        assert all(a.approved_by == "carol" for a in d.actions)
        assert d.actions[2].verification.startswith("userAccountControl has ACCOUNTDISABLE")
        assert (d.hosts, d.accounts, d.ips) == (["edge-fw", "victim"], ["bob"], ["203.0.113.66"])
        assert d.data_categories == ["credentials", "financial_account", "ssn"]
        assert d.resident_states == ["MA", "WA"] and d.residents_by_state == {"MA": 1200, "WA": 640}
        assert len(d.evidence) == 2 and all(len(e["sha256"]) == 64 for e in d.evidence)
        assert all(e.event != "action.failed" for e in d.timeline)  # the other incident's failure is excluded

    def test_audit_summary_verified(self, report) -> None:  # type: ignore[no-untyped-def]
        """The report carries a passing verification with signed checkpoints and the key fingerprint."""
        audit = report.data.audit
        assert audit.ok and audit.checkpoints_verified >= 2
        assert audit.key_fingerprint.startswith("ed25519:")

    def test_report_carries_the_anchor_to_keep(self, report, lab) -> None:  # type: ignore[no-untyped-def]
        """The report states the last signed head; that anchor, given back to verify, passes on the same log."""
        from agent.audit import TrustAnchor

        content = report.content()
        seq, digest = content["audit"]["anchor_to_keep"].split(":")
        assert content["audit"]["anchor_to_keep"] in report.to_html()
        anchored = verify(lab["audit"], public_key=lab["public"],
                          anchor=TrustAnchor(fingerprint=report.data.audit.key_fingerprint, seq=int(seq), hash=digest))
        assert anchored.ok, anchored.render()


class TestReportHtml:
    def test_timeline_in_utc_and_local(self, report) -> None:  # type: ignore[no-untyped-def]
        """The timeline shows each record in UTC and in the incident's local zone."""
        html = report.to_html()
        assert "2026-11-20 14:20:07" in html and "2026-11-20 09:20:07 EST" in html
        assert "Incident opened: Ransomware beacon on victim" in html
        assert "approved by carol: confirmed beacon, contain now" in html
        assert "block_ip on edge-fw completed: deny 203.0.113.66/32 added" in html

    def test_deadlines_for_massachusetts_and_washington(self, report) -> None:  # type: ignore[no-untyped-def]
        """MA shows its 'as soon as practicable' standard without a date; WA residents are due 20 Dec 2026."""
        html = report.to_html()
        assert "no calendar deadline — as soon as practicable and without unreasonable delay" in html
        assert "Sunday 20 December 2026, end of day (America/New_York) — 30 calendar days" in html
        assert "Offer credit monitoring" in html and "18 months" in html
        assert any(f"For counsel{q}s review — not legal advice" in html for q in ("&#39;", "'"))
        assert "Counting convention" in html
        due = html[html.index("What is due next"):html.index('id="notifications"')]
        assert due.index("Affected Massachusetts residents") < due.index("2026-12-20 23:59 EST")

    def test_actions_scope_evidence_and_key(self, report) -> None:  # type: ignore[no-untyped-def]
        """Every action, the scope, each evidence hash and the key fingerprint appear; secrets do not."""
        html = report.to_html()
        for text in ("ruleset replaced (snapshot kept for undo)", "account bob disabled", "203.0.113.66",
                     "Social Security numbers", "MA: <strong>1,200</strong>", report.data.audit.key_fingerprint,
                     *(e["sha256"] for e in report.data.evidence)):
            assert text in html, text
        assert "should-not-appear" not in html

    def test_failed_verification_is_prominent(self, report) -> None:  # type: ignore[no-untyped-def]
        """A failed audit verification is stated in the summary, not buried."""
        from dataclasses import replace

        broken = replace(report.data, audit=replace(report.data.audit, ok=False, first_error="seq 5: hash mismatch"))
        html = build_report(broken).to_html()
        assert "VERIFICATION FAILED" in html and "seq 5: hash mismatch" in html


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
class TestReportPdf:
    def test_pdf_renders_and_is_not_blank(self, report, tmp_path: Path,  # type: ignore[no-untyped-def]
                                          caplog: pytest.LogCaptureFixture) -> None:
        """The PDF renders without CSS/HTML warnings; page 1 rasterises to a PNG with real ink on it."""
        with caplog.at_level("WARNING", logger="weasyprint"):
            pdf = report.to_pdf(tmp_path / "report.pdf")
        assert [r.getMessage() for r in caplog.records if r.name.startswith("weasyprint")] == []
        assert pdf.read_bytes().startswith(b"%PDF")
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
        assert pages >= 3
        subprocess.run(["pdftoppm", "-png", "-r", "40", "-f", "1", "-l", "1", str(pdf),
                        str(tmp_path / "page")], check=True)
        png = next(tmp_path.glob("page*.png"))
        pixels = _gray_pixels(png)
        mean = sum(pixels) / len(pixels)
        variance = sum((p - mean) ** 2 for p in pixels) / len(pixels)
        dark = sum(1 for p in pixels if p < 128) / len(pixels)
        assert variance > 200 and 0.005 < dark < 0.5, (variance, dark)
        text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
        assert INCIDENT in text and "not legal advice" in text

    def test_every_page_is_marked_privileged(self, report, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
        """Each page carries the privilege marking; page 1 opens with the narrative, appendices come last."""
        pdf = report.to_pdf(tmp_path / "report.pdf")
        info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True).stdout
        pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
        texts = [subprocess.run(["pdftotext", "-f", str(n), "-l", str(n), str(pdf), "-"], capture_output=True,
                                text=True, check=True).stdout for n in range(1, pages + 1)]
        assert all("Privileged & Confidential" in t.replace("\n", " ").replace("PRIVILEGED & CONFIDENTIAL",
                                                                               "Privileged & Confidential")
                   for t in texts), [n for n, t in enumerate(texts, 1) if "rivileged" not in t.lower()]
        first = texts[0]
        assert "What happened" in first and "What is due next" in first and "What is verified" in first
        assert "Appendix" in texts[-1] + texts[-2] and "End of report" in texts[-1]
        assert "Example Dental Group LLC" in first


def _gray_pixels(png: Path) -> list[int]:
    """Grayscale pixel values of a PNG (Pillow comes with WeasyPrint)."""
    from PIL import Image

    with Image.open(png) as image:
        return list(image.convert("L").getdata())
