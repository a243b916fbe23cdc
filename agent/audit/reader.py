"""Reading the audit log back (for reports) and exporting an incident's records for counsel.

Why export whole segments: the hash chain and the checkpoint signatures cover whole segments; handing over
filtered records would leave counsel nothing they can verify. The export therefore holds every segment from the
first one that mentions the incident to the newest (which carries the checkpoints that sign it), the head file,
the public key, the incident's evidence files, and a manifest of SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.audit.canonical import HEAD_FILE
from agent.audit.segments import list_segments

__all__ = ["ExportResult", "export_incident", "records"]


def records(directory: Path, incident: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield records oldest first, optionally only those whose ``incident`` field equals ``incident``.

    Lines that do not parse (a torn final write) are skipped; use :func:`agent.audit.verify` to judge integrity.
    """
    needle = None if incident is None else json.dumps(incident, ensure_ascii=False).encode("utf-8")
    for path in list_segments(Path(directory)):
        with path.open("rb") as handle:
            for line in handle:
                if needle is not None and needle not in line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if incident is None or record.get("incident") == incident:
                    yield record


class ExportResult:
    """What an export produced: its location, the files in it and the segments that mention the incident."""

    def __init__(self, path: Path, files: dict[str, str], segments: list[str], records: int) -> None:
        self.path = path
        self.files = files
        self.segments = segments
        self.records = records


def export_incident(directory: Path, incident: str, out: Path, *, evidence_dir: Path | None = None,
                    public_key: Path | None = None) -> ExportResult:
    """Write a folder (or ``.zip`` when ``out`` ends so) counsel can verify with only the public key."""
    directory, out = Path(directory), Path(out)
    segments = list_segments(directory)
    needle = json.dumps(incident, ensure_ascii=False).encode("utf-8")
    first = None
    count = 0
    for index, path in enumerate(segments):
        with path.open("rb") as handle:
            hits = sum(1 for line in handle if needle in line and _mentions(line, incident))
        if hits and first is None:
            first = index
        count += hits
    if first is None:
        raise LookupError(f"no audit records for incident {incident!r} in {directory}")
    chosen = segments[first:]
    staging = Path(tempfile.mkdtemp(prefix="audit-export-")) if out.suffix == ".zip" else out
    staging.mkdir(parents=True, exist_ok=True)
    try:
        for path in chosen:
            _copy(path, staging / "audit" / path.name)
        if (directory / HEAD_FILE).exists():
            _copy(directory / HEAD_FILE, staging / "audit" / HEAD_FILE)
        if public_key is not None:
            _copy(Path(public_key), staging / "audit-signing-key.pub")
        if evidence_dir is not None and (Path(evidence_dir) / incident).is_dir():
            shutil.copytree(Path(evidence_dir) / incident, staging / "evidence", dirs_exist_ok=True)
        files = _manifest(staging)
        (staging / "MANIFEST.json").write_text(json.dumps(
            {"incident": incident, "records_for_incident": count, "segments": [p.name for p in chosen],
             "sha256": files, "verify": "agent audit verify --dir audit --public-key audit-signing-key.pub"},
            indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if out.suffix == ".zip":
            out.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for path in sorted(staging.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(staging).as_posix())
    finally:
        if staging != out:
            shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(out, files, [p.name for p in chosen], count)


def _mentions(line: bytes, incident: str) -> bool:
    try:
        return bool(json.loads(line).get("incident") == incident)
    except (ValueError, AttributeError):
        return False


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _manifest(root: Path) -> dict[str, str]:
    digests: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "MANIFEST.json":
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
            digests[path.relative_to(root).as_posix()] = digest.hexdigest()
    return digests
