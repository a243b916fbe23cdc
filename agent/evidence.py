"""Evidence files with chain of custody: stored once, hashed, recorded in the audit log, listed in a manifest.

Why: what a host looked like before we isolated it (processes, connections, logged-in users, firewall state) is
evidence counsel and investigators may need to rely on. Each file is written exactly once (never overwritten)
under ``<evidence_dir>/<incident>/<target>/<UTC timestamp>/``, its SHA-256 goes into an ``evidence.stored`` audit
record (who collected it, when, from where), and the incident's ``SHA256SUMS`` lets anyone re-check the files
with ``sha256sum -c``. Content is stored verbatim — redacting evidence would alter it; only hashes, sizes and
names enter the audit log.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.journal import AuditSink

__all__ = ["EvidenceItem", "check_evidence", "read_manifest", "safe_name", "store_evidence"]

_COMPONENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class EvidenceItem:
    """One stored evidence file. ``path`` is relative to the incident's evidence folder."""

    incident: str
    target: str
    name: str
    path: str
    sha256: str
    size: int
    collected_at: str
    collected_by: str
    source: str
    status: str = "captured"  # "captured" | "partial" (the command failed after writing some output)
    error: str = ""
    collector_host: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def safe_name(name: str) -> str:
    """A file name that cannot escape its folder or hide: unsafe runs become ``_``, no leading dot, ≤ 100 chars."""
    cleaned = _UNSAFE.sub("_", name.replace("\\", "/").split("/")[-1]).strip("._") or "evidence"
    return cleaned[:100]


def _component(value: str, field: str) -> str:
    if not _COMPONENT.fullmatch(value) or ".." in value:
        raise ValueError(f"{field} {value!r} is not a safe path component (letters, digits, . _ @ -; ≤128 chars)")
    return value


def store_evidence(evidence_dir: Path, incident: str, target: str, files: Mapping[str, str | bytes],
                   audit: AuditSink, collected_by: str, source: str, *, failures: Mapping[str, str] | None = None,
                   collector_host: str = "") -> list[EvidenceItem]:
    """Write ``files`` (name → content) for ``target``, hash them, audit each one and update the manifest.

    ``collected_by`` is the person or runbook step that ordered the capture; ``source`` says where the data came
    from — the target (e.g. ``ssh_linux://victim (10.0.0.5)``), which is the chain of custody — and
    ``collector_host`` where the agent ran. ``failures`` (name → reason) are captures that failed: an empty one
    is audited as ``evidence.failed`` and never stored as a file that looks like evidence; a failed one with
    some output is stored with status ``partial``. Raises ``ValueError`` for unsafe ids and ``OSError`` if the
    files cannot be written; callers treat capture failure as non-blocking and audit it.
    """
    failures = dict(failures or {})
    for name in list(failures):
        content = files.get(name)
        if content is None or not (content.strip() if isinstance(content, str) else bytes(content).strip()):
            audit.record("evidence.failed", incident=incident, target=target, original_name=name,
                         error=failures.pop(name), collected_by=collected_by, source=source,
                         collector_host=collector_host)
            files = {k: v for k, v in files.items() if k != name}
    if not files:
        return []
    incident_dir = Path(evidence_dir) / _component(incident, "incident")
    now = dt.datetime.now(dt.UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S.%fZ")
    folder = incident_dir / _component(target, "target") / stamp
    suffix = 0
    while folder.exists():
        suffix += 1
        folder = incident_dir / target / f"{stamp}-{suffix}"
    folder.mkdir(parents=True, mode=0o750)
    collected_at = now.isoformat(timespec="microseconds").replace("+00:00", "Z")
    items: list[EvidenceItem] = []
    used: set[str] = set()
    for original, content in files.items():
        name = safe_name(original)
        base, counter = name, 1
        while name in used:
            counter += 1
            name = f"{counter}-{base}"
        used.add(name)
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        path = folder / name
        write_durably(path, data, os.O_EXCL)
        item = EvidenceItem(incident=incident, target=target, name=original, path=path.relative_to(incident_dir)
                            .as_posix(), sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                            collected_at=collected_at, collected_by=collected_by, source=source,
                            status="partial" if original in failures else "captured",
                            error=failures.get(original, ""), collector_host=collector_host)
        items.append(item)
    _fsync_dir(folder)
    _append_manifest(incident_dir, items)
    for item in items:
        audit.record("evidence.stored", incident=incident, target=target, file=item.path, original_name=item.name,
                     sha256=item.sha256, size=item.size, collected_at=item.collected_at,
                     collected_by=collected_by, source=source, collector_host=collector_host, status=item.status,
                     **({"error": item.error} if item.error else {}))
    return items


def write_durably(path: Path, data: bytes, flags: int) -> None:
    """Create ``path`` read-only (0440) with ``data``, every byte written and fsynced before it returns: an
    evidence file is hashed into the audit chain, so a crash must never leave a shorter file under its name.
    ``flags``: ``os.O_EXCL`` (never overwrite) or ``os.O_TRUNC`` (a temporary file renamed afterwards)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | flags, 0o440)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_manifest(incident_dir: Path, items: list[EvidenceItem]) -> None:
    """Add items to MANIFEST.json and SHA256SUMS under a lock (several captures may finish at once)."""
    lock_fd = os.open(incident_dir / ".manifest.lock", os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        manifest_path = incident_dir / "MANIFEST.json"
        existing: dict[str, Any] = (json.loads(manifest_path.read_text(encoding="utf-8"))
                                    if manifest_path.exists() else {"incident": items[0].incident, "items": []})
        existing["items"].extend(item.to_dict() for item in items)
        temporary = manifest_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(existing, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(temporary, manifest_path)
        with (incident_dir / "SHA256SUMS").open("a", encoding="utf-8") as sums:
            for item in items:
                sums.write(f"{item.sha256}  {item.path}\n")
            sums.flush()
            os.fsync(sums.fileno())
        _fsync_dir(incident_dir)
    finally:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)


def read_manifest(evidence_dir: Path, incident: str) -> list[EvidenceItem]:
    """All evidence items recorded for ``incident`` (empty when none were captured)."""
    path = Path(evidence_dir) / _component(incident, "incident") / "MANIFEST.json"
    if not path.exists():
        return []
    fields = set(EvidenceItem.__dataclass_fields__)
    return [EvidenceItem(**{k: v for k, v in row.items() if k in fields})
            for row in json.loads(path.read_text(encoding="utf-8"))["items"]]


def check_evidence(evidence_dir: Path, incident: str) -> list[tuple[EvidenceItem, str | None]]:
    """Re-hash every manifest entry: ``(item, None)`` when intact, else ``(item, reason)``."""
    base = Path(evidence_dir) / incident
    results: list[tuple[EvidenceItem, str | None]] = []
    for item in read_manifest(evidence_dir, incident):
        try:
            digest = hashlib.sha256((base / item.path).read_bytes()).hexdigest()
        except OSError as exc:
            results.append((item, f"missing: {exc.strerror}"))
            continue
        results.append((item, None if digest == item.sha256 else "SHA-256 differs from the recorded hash"))
    return results
