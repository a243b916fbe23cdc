"""`audit export`: a folder or zip counsel can verify with nothing but the public key."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from agent.audit import AuditLog, export_incident, verify
from agent.audit.cli import main as audit_main
from agent.audit.keys import generate_keypair
from agent.evidence import store_evidence


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    key = tmp_path / "keys" / "audit.key"
    public, _ = generate_keypair(key)
    old_day = tmp_path / "audit" / "audit-2026-11-01.jsonl"
    with AuditLog(tmp_path / "audit", signing_key=key) as log:
        log.record("incident.opened", incident="INC-0")
    # pretend the first record was written on an earlier day, before the incident we export
    next((tmp_path / "audit").glob("audit-*.jsonl")).rename(old_day)
    (tmp_path / "audit" / "audit.head").unlink()
    with AuditLog(tmp_path / "audit", signing_key=key) as log:
        log.record("incident.opened", incident="INC-5", title="t")
        store_evidence(tmp_path / "evidence", "INC-5", "victim", {"ps.txt": "1 init"}, log, "alice", "ssh")
        log.record("action.done", incident="INC-5", target="victim")
    return {"base": tmp_path, "public": public}


class TestExport:
    def test_folder_export_verifies_offline(self, setup: dict[str, Path]) -> None:
        """The exported folder holds segments from the incident on, head, key, evidence and a manifest; it verifies."""
        base = setup["base"]
        result = export_incident(base / "audit", "INC-5", base / "out", evidence_dir=base / "evidence",
                                 public_key=setup["public"])
        out = base / "out"
        assert result.records == 3 and len(result.segments) == 1  # the older day's segment is not needed
        report = verify(out / "audit", public_key=out / "audit-signing-key.pub")
        assert report.ok, report.render()
        assert report.checkpoints_verified >= 1
        assert any("excerpt" in note for note in report.notes)
        manifest = json.loads((out / "MANIFEST.json").read_text())
        for rel, digest in manifest["sha256"].items():
            assert hashlib.sha256((out / rel).read_bytes()).hexdigest() == digest
        assert any(rel.startswith("evidence/victim/") for rel in manifest["sha256"])

    def test_zip_export_via_cli(self, setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
        """`audit export --out X.zip` writes a zip with the same content and reports what it wrote."""
        base = setup["base"]
        code = audit_main(["export", "--incident", "INC-5", "--out", str(base / "inc5.zip"), "--dir",
                           str(base / "audit"), "--evidence-dir", str(base / "evidence"),
                           "--public-key", str(setup["public"]), "--json"])
        assert code == 0
        summary = json.loads(capsys.readouterr().out)
        with zipfile.ZipFile(base / "inc5.zip") as archive:
            names = set(archive.namelist())
            archive.extractall(base / "unzipped")
        assert {"MANIFEST.json", "audit-signing-key.pub"} <= names and any(n.startswith("audit/audit-") for n in names)
        assert summary["records"] == 3
        assert verify(base / "unzipped" / "audit", public_key=base / "unzipped" / "audit-signing-key.pub").ok

    def test_unknown_incident(self, setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
        """Exporting an incident with no records fails with exit code 2 and says why."""
        base = setup["base"]
        assert audit_main(["export", "--incident", "NOPE", "--out", str(base / "x"), "--dir",
                           str(base / "audit")]) == 2
        assert "no audit records" in capsys.readouterr().err
