"""Exporting one incident for counsel, and verifying such an export with nothing but its files and an anchor.

What an export holds (docs/audit-format.md, "Exports"):

* ``audit/audit-YYYY-MM-DD.jsonl`` — the chain **from the incident's first record to the first checkpoint that
  signs its last one**, cut at record boundaries: the incident's own records and the checkpoints in full; every
  other record in that stretch as a *stub* (version-2 records: seq, prev_hash, incident tag, body digest — its
  link verifies, its content is not shown, and it provably belongs to another incident). Version-1 records
  (written before version 2) cannot be withheld and appear in full. Nothing before the incident is included.
* ``audit-signing-key.pub`` — the Ed25519 public key (its fingerprint is in the manifest; compare it with the one
  counsel received earlier).
* ``evidence/…`` — the incident's evidence files; their SHA-256 are in the signed ``evidence.stored`` records.
* ``MANIFEST.json`` — files and SHA-256, incident, seq range, key fingerprint; ``MANIFEST.sig`` — Ed25519 over
  :data:`MANIFEST_DOMAIN` + the manifest bytes.

The export itself is audited: an ``audit.exported`` record (incident, file name, who) and a checkpoint are
written *before* the copy, so the export contains the signed record of its own making.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.audit.anchor import TrustAnchor
from agent.audit.canonical import RECORD_VERSION, withheld_line
from agent.audit.segments import list_segments
from agent.audit.chain import verify
from agent.audit.verdict import VerifyError, VerifyReport

__all__ = ["EXPORT_FORMAT", "MANIFEST_DOMAIN", "ExportResult", "export_incident", "is_export", "verify_export"]

EXPORT_FORMAT = "containment-agent/export/v1"
MANIFEST_DOMAIN = b"containment-agent/export-manifest/v1\n"
_KEY_NAME = "audit-signing-key.pub"


class ExportResult:
    """What an export produced: its location, the files in it and the segments that mention the incident."""

    def __init__(self, path: Path, files: dict[str, str], segments: list[str], records: int,
                 first_seq: int = 0, last_seq: int = 0, signed: bool = False) -> None:
        self.path = path
        self.files = files
        self.segments = segments
        self.records = records
        self.first_seq, self.last_seq, self.signed = first_seq, last_seq, signed


def export_incident(directory: Path, incident: str, out: Path, *, evidence_dir: Path | None = None,
                    public_key: Path | None = None, signing_key: Path | None = None, audit_log: Any = None,
                    actor: str = "") -> ExportResult:
    """Write a folder (or ``.zip`` when ``out`` ends so) counsel can verify offline; see the module docstring.

    ``audit_log``: the live :class:`~agent.audit.AuditLog`; when given, the export is recorded and checkpointed
    first. ``signing_key`` signs the manifest (and yields the public key when ``public_key`` is not given).
    """
    directory, out = Path(directory), Path(out)
    if not _has_incident(directory, incident):
        raise LookupError(f"no audit records for incident {incident!r} in {directory}")
    if audit_log is not None:
        audit_log.record("audit.exported", incident=incident, file=out.name, exported_by=actor or None)
        audit_log.checkpoint()
        audit_log.flush()
    signer = _signer(signing_key)
    selection = _select(directory, incident)
    staging = Path(tempfile.mkdtemp(prefix="audit-export-")) if out.suffix == ".zip" else out
    staging.mkdir(parents=True, exist_ok=True)
    try:
        for name, lines in selection.lines.items():
            target = staging / "audit" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"".join(lines))
        fingerprint = _write_public_key(staging / _KEY_NAME, public_key, signer)
        if evidence_dir is not None and (Path(evidence_dir) / incident).is_dir():
            shutil.copytree(Path(evidence_dir) / incident, staging / "evidence", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".manifest.lock"))
        files = _hashes(staging)
        manifest = json.dumps({
            "format": EXPORT_FORMAT, "incident": incident, "records_for_incident": selection.count,
            "first_seq": selection.first, "last_seq": selection.last, "segments": list(selection.lines),
            "key_fingerprint": fingerprint, "sha256": files, "signed_to_the_end": selection.signed_end,
            "verify": "agent audit verify THIS-FOLDER-OR-ZIP --expect-key <fingerprint you received> "
                      "--anchor <seq:hash you received>; without the agent: python3 docs/verify_export.py",
        }, indent=2, sort_keys=True).encode("utf-8") + b"\n"
        (staging / "MANIFEST.json").write_bytes(manifest)
        if signer is not None:
            signature = signer.sign(MANIFEST_DOMAIN + manifest)
            (staging / "MANIFEST.sig").write_text(base64.b64encode(signature).decode("ascii") + "\n")
        if out.suffix == ".zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(staging).as_posix())
    finally:
        if staging != out:
            shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out, files, list(selection.lines), selection.count, selection.first, selection.last,
                        signer is not None)


@dataclasses.dataclass
class _Selection:
    lines: dict[str, list[bytes]]
    count: int
    first: int
    last: int
    signed_end: bool


def _has_incident(directory: Path, incident: str) -> bool:
    needle = json.dumps(incident, ensure_ascii=False).encode("utf-8")
    for path in list_segments(directory):
        with path.open("rb") as handle:
            if any(needle in line and _incident_of(line) == incident for line in handle):
                return True
    return False


def _incident_of(line: bytes) -> Any:
    try:
        return json.loads(line).get("incident")
    except (ValueError, AttributeError):
        return None


def _select(directory: Path, incident: str) -> _Selection:
    """From the incident's first record to the first checkpoint covering its last record (or the log's end)."""
    needle = json.dumps(incident, ensure_ascii=False).encode("utf-8")
    rows: list[tuple[str, int, bytes, dict[str, Any]]] = []
    first = last = None
    count = 0
    for path in list_segments(directory):
        with path.open("rb") as handle:
            for line in handle:
                if not line.endswith(b"\n") or (first is None and needle not in line):
                    continue  # a torn, never-committed tail; or before the incident
                record: dict[str, Any] = json.loads(line)
                if record.get("incident") == incident:
                    first = record["seq"] if first is None else first
                    last = record["seq"]
                    count += 1
                if first is not None:
                    rows.append((path.name, int(record["seq"]), line, record))
    assert first is not None and last is not None
    end, signed = rows[-1][1], False
    for _, seq, _, record in rows:
        if record.get("event") == "audit.checkpoint" and record.get("covers_seq", 0) >= last:
            end, signed = seq, True
            break
    lines: dict[str, list[bytes]] = {}
    for name, seq, raw, record in rows:
        if seq > end:
            break
        withhold = (record.get("incident") != incident and record.get("event") != "audit.checkpoint"
                    and record.get("v") == RECORD_VERSION)  # another incident's record: its link, not its content
        lines.setdefault(name, []).append(
            withheld_line({k: v for k, v in record.items() if k != "hash"}, record["hash"]) if withhold else raw)
    return _Selection(lines, count, first, end, signed)


def _signer(signing_key: Path | None) -> Any:
    if signing_key is None:
        return None
    from agent.audit.keys import load_private_key

    return load_private_key(Path(signing_key))


def _write_public_key(target: Path, public_key: Path | None, signer: Any) -> str | None:
    from agent.audit.keys import fingerprint, load_public_key, public_raw

    if public_key is not None:
        key = load_public_key(Path(public_key))
    elif signer is not None:
        key = signer.public_key()
    else:
        return None
    from cryptography.hazmat.primitives import serialization

    target.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return fingerprint(public_raw(key))


def _hashes(root: Path) -> dict[str, str]:
    digests: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name not in ("MANIFEST.json", "MANIFEST.sig"):
            digests[path.relative_to(root).as_posix()] = _sha256(path)
    return digests


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_export(path: Path) -> bool:
    """True for a ``.zip`` or a folder holding ``MANIFEST.json`` and ``audit/``."""
    path = Path(path)
    return (path.is_file() and zipfile.is_zipfile(path)) or (path / "MANIFEST.json").is_file()


@contextmanager
def _opened(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield path
        return
    root = Path(tempfile.mkdtemp(prefix="audit-verify-"))
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                member = Path(name)
                if member.is_absolute() or ".." in member.parts:
                    raise ValueError(f"{path}: unsafe member name {name!r} in the zip")
            archive.extractall(root)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def verify_export(path: Path, *, public_key: Path | None = None, anchor: TrustAnchor | None = None) -> VerifyReport:
    """Verify an export (folder or zip): manifest hashes and signature, the chain, the anchor, evidence hashes.

    The incident named in the manifest must have its ``incident.opened`` record in the export.
    """
    path = Path(path)
    with _opened(path) as root:
        manifest_bytes = (root / "MANIFEST.json").read_bytes()
        manifest = json.loads(manifest_bytes)
        key_path = Path(public_key) if public_key is not None else root / _KEY_NAME
        key_path = key_path if key_path.exists() else None  # type: ignore[assignment]
        incident = str(manifest.get("incident"))
        base = anchor or TrustAnchor()
        report = verify(root / "audit", public_key=key_path, anchor=dataclasses.replace(base, incident=incident),
                        allow_withheld=True)
        if not report.ok:
            return report
        problem = _check_manifest(root, manifest, manifest_bytes, key_path) or _check_evidence(root, incident)
        if problem is not None:
            report.ok = False
            report.first_error = problem
            report.proven.clear()
            report.not_proven[:] = ["the export failed verification: nothing in it can be relied on"]
        else:
            report.proven.append("every evidence file matches the SHA-256 in its signed evidence.stored record")
            if (root / "MANIFEST.sig").exists() and key_path is not None:
                report.proven.append("the manifest was signed by the same key")
        return report


def _check_manifest(root: Path, manifest: dict[str, Any], manifest_bytes: bytes,
                    key_path: Path | None) -> VerifyError | None:
    for rel, digest in sorted((manifest.get("sha256") or {}).items()):
        target = root / rel
        if not target.is_file():
            return VerifyError("MANIFEST.json", 0, None, f"file listed in the manifest is missing: {rel}")
        if _sha256(target) != digest:
            return VerifyError(rel, 0, None, "file differs from the SHA-256 in the manifest (edited)")
    sig = root / "MANIFEST.sig"
    if key_path is not None and sig.exists():
        from agent.audit.keys import load_public_key

        key = load_public_key(key_path)
        try:
            key.verify(base64.b64decode(sig.read_text().strip(), validate=True), MANIFEST_DOMAIN + manifest_bytes)
        except Exception:  # noqa: BLE001 - any failure to verify is the same finding
            return VerifyError("MANIFEST.sig", 0, None, "manifest signature invalid (manifest edited or re-signed)")
    elif key_path is not None:
        return VerifyError("MANIFEST.sig", 0, None, "manifest is not signed (MANIFEST.sig missing)")
    return None


def _check_evidence(root: Path, incident: str) -> VerifyError | None:
    from agent.audit.reader import records

    for record in records(root / "audit", incident):
        if record.get("event") != "evidence.stored":
            continue
        target = root / "evidence" / str(record.get("file"))
        if not target.is_file():
            return VerifyError(f"evidence/{record.get('file')}", 0, record.get("seq"),
                               "evidence file named in a signed record is missing from the export")
        if _sha256(target) != record.get("sha256"):
            return VerifyError(f"evidence/{record.get('file')}", 0, record.get("seq"),
                               "evidence file differs from the SHA-256 in its signed record (evidence edited)")
    return None
