"""Evidence storage: safe paths, hashes, audit records (chain of custody) and the per-incident manifest."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from agent.audit import AuditLog, records, verify
from agent.evidence import check_evidence, read_manifest, safe_name, store_evidence


@pytest.fixture()
def audit(tmp_path: Path):  # type: ignore[no-untyped-def]
    with AuditLog(tmp_path / "audit", actor="agent") as log:
        yield log


class TestStoreEvidence:
    def test_files_hashed_and_audited(self, tmp_path: Path, audit: AuditLog) -> None:
        """Each file is written under incident/target/timestamp, hashed, and recorded in the audit log."""
        files = {"processes.txt": "PID CMD\n1 init\n", "ruleset.nft": b"table inet filter {}\n"}
        items = store_evidence(tmp_path / "ev", "INC-7", "victim", files, audit, collected_by="alice",
                               source="ssh_linux://victim (10.0.0.5)")
        assert [i.name for i in items] == ["processes.txt", "ruleset.nft"]
        for item, content in zip(items, files.values(), strict=True):
            raw = content.encode() if isinstance(content, str) else content
            path = tmp_path / "ev" / "INC-7" / item.path
            assert path.read_bytes() == raw
            assert item.sha256 == hashlib.sha256(raw).hexdigest() and item.size == len(raw)
            assert item.path.startswith("victim/") and item.collected_at.endswith("Z")
        audit.flush()
        stored = [r for r in records(tmp_path / "audit", "INC-7") if r["event"] == "evidence.stored"]
        assert [(r["sha256"], r["collected_by"], r["source"]) for r in stored] == [
            (i.sha256, "alice", "ssh_linux://victim (10.0.0.5)") for i in items]
        assert verify(tmp_path / "audit").ok

    def test_manifest_and_sha256sums(self, tmp_path: Path, audit: AuditLog) -> None:
        """Two captures accumulate in MANIFEST.json, and `sha256sum -c SHA256SUMS` passes."""
        store_evidence(tmp_path / "ev", "INC-8", "victim", {"a.txt": "1"}, audit, "alice", "s1")
        store_evidence(tmp_path / "ev", "INC-8", "dc1", {"user.ldif": "dn: cn=bob"}, audit, "bob", "s2")
        assert [i.target for i in read_manifest(tmp_path / "ev", "INC-8")] == ["victim", "dc1"]
        result = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], check=False, cwd=tmp_path / "ev" / "INC-8",
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr

    def test_tampered_file_detected(self, tmp_path: Path, audit: AuditLog) -> None:
        """check_evidence reports a changed or missing file against the recorded hash."""
        items = store_evidence(tmp_path / "ev", "INC-9", "victim", {"a.txt": "x", "b.txt": "y"}, audit, "a", "s")
        first = tmp_path / "ev" / "INC-9" / items[0].path
        first.chmod(0o640)
        first.write_text("changed")
        (tmp_path / "ev" / "INC-9" / items[1].path).unlink()
        reasons = [reason for _, reason in check_evidence(tmp_path / "ev", "INC-9")]
        assert reasons[0] == "SHA-256 differs from the recorded hash" and reasons[1].startswith("missing")

    def test_hostile_names_stay_inside(self, tmp_path: Path, audit: AuditLog) -> None:
        """File names with path separators, dots or shell characters are flattened; duplicates get a prefix."""
        items = store_evidence(tmp_path / "ev", "INC-1", "victim",
                               {"../../etc/passwd": "x", "/abs/passwd": "y", ".hidden;rm -rf": "z"}, audit, "a", "s")
        names = [Path(i.path).name for i in items]
        assert names == ["passwd", "2-passwd", "hidden_rm_-rf"]
        for item in items:
            resolved = (tmp_path / "ev" / "INC-1" / item.path).resolve()
            assert resolved.is_relative_to((tmp_path / "ev" / "INC-1").resolve())

    @pytest.mark.parametrize(("incident", "target"), [("../x", "victim"), ("INC-1", "a/b"), ("", "v"), ("I", "..")])
    def test_unsafe_ids_rejected(self, tmp_path: Path, audit: AuditLog, incident: str, target: str) -> None:
        """Incident and target ids that could escape the evidence folder are refused, naming the field."""
        with pytest.raises(ValueError, match="incident|target"):
            store_evidence(tmp_path / "ev", incident, target, {"a": "b"}, audit, "a", "s")

    def test_files_are_read_only(self, tmp_path: Path, audit: AuditLog) -> None:
        """Stored evidence is created read-only (0440) so nothing rewrites it by accident."""
        [item] = store_evidence(tmp_path / "ev", "INC-2", "victim", {"a": "b"}, audit, "a", "s")
        assert (tmp_path / "ev" / "INC-2" / item.path).stat().st_mode & 0o777 == 0o440

    def test_safe_name_never_empty(self) -> None:
        """A name made only of unsafe characters still yields a usable file name."""
        assert safe_name("...") == "evidence" and safe_name("a b/c d.txt") == "c_d.txt"
