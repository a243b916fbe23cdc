"""What an audit verification can conclude: the reasons it stops for, where it stopped, and the report.

Why a module of its own (STYLE #2): the checker (:mod:`agent.audit.chain`), the parallel checker
(:mod:`agent.audit.parallel`), the export and the CLI all speak these types; the reason texts are the words
counsel's expert reads (docs/audit-format.md), so they live in one place apart from the checking logic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["VerifyError", "VerifyReport"]

EDITED = "hash mismatch (record edited)"
BROKEN_LINK = "prev_hash does not match previous record (record deleted or reordered)"
SEQ_GAP = "seq gap (records missing or renumbered)"
TRUNCATED_LINE = "truncated line (segment cut mid-record)"
MALFORMED = "malformed line (not a JSON audit record)"
NOT_CANONICAL = "record not in canonical form (re-encoded after writing)"
BAD_SIGNATURE = "checkpoint signature invalid (forged checkpoint or rewritten records)"
WRONG_KEY = "wrong key (checkpoint signed by a different key than the one given)"
BAD_COVER = "checkpoint does not cover the record before it (forged checkpoint)"
BAD_GENESIS = "first record (seq 1) must have prev_hash of 64 zeros"
TRUNCATED_SEGMENT = "truncated segment: log ends before the head recorded at the last fsync (records removed)"
HEAD_MISMATCH = "head file disagrees with the record at its seq (record edited or log replaced)"
ANCHOR_KEY = "key swap: the public key given is not the expected one"
ANCHOR_NEEDS_KEY = "a trust anchor needs the public key (--public-key) to check signed coverage"
ANCHOR_REWRITTEN = "record at the anchor's seq has another hash (chain rewritten since counsel received the anchor)"
ANCHOR_BEYOND = "log ends before the anchor (records removed from the end)"
ANCHOR_COVERAGE = "signed coverage ends before the anchor (checkpoints deleted or chain rewritten)"
ANCHOR_UNSIGNED = "too many records after the last signed checkpoint (checkpoints deleted?)"
PREFIX_CUT = "log starts after seq 1: earlier records are missing (prefix cut)"
NO_OPENING = "incident export lacks the incident's opening record (incident.opened)"
WITHHELD_IN_LOG = "withheld record (a stub) in an audit log: only exports may withhold other incidents' records"
WITHHELD_OURS = "a record of the exported incident itself was withheld"


@dataclass
class VerifyError:
    """Where verification stopped and why."""

    file: str
    line: int
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} (seq {self.seq if self.seq is not None else '?'}): {self.reason}"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify`. ``ok`` is False exactly when ``first_error`` is set."""

    ok: bool
    records: int
    first_error: VerifyError | None
    checkpoints_verified: int
    key_fingerprint: str | None
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    last_checkpoint_seq: int | None = None
    last_checkpoint_hash: str | None = None  # hash of the last signed record: the anchor to hand to counsel
    segments: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unsigned_after_checkpoint: int = 0
    withheld: int = 0  # other incidents' records present only as stubs (exports)
    anchor: str | None = None  # what the log was compared against (None: no trust anchor)
    proven: list[str] = field(default_factory=list)
    not_proven: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> str:
        """Human summary, one fact per line, first line says OK or FAILED."""
        lines = [f"audit log: {'OK' if self.ok else 'FAILED'} — {self.records} records verified"
                 + (f" (seq {self.first_seq}..{self.last_seq})" if self.first_seq is not None else "")]
        if self.first_error is not None:
            lines.append(f"first error: {self.first_error}")
        lines.append(f"segments: {', '.join(self.segments) if self.segments else 'none'}")
        if self.key_fingerprint:
            lines.append(f"signing key: {self.key_fingerprint}")
        lines.append(f"checkpoints verified: {self.checkpoints_verified}"
                     + (f" (last covers seq {self.last_checkpoint_seq})" if self.last_checkpoint_seq else ""))
        if self.last_hash:
            lines.append(f"head: seq {self.last_seq} hash {self.last_hash}")
        lines.extend(f"note: {note}" for note in self.notes)
        lines.append(f"trust anchor: {self.anchor or 'NONE'}")
        lines.extend(f"proven: {text}" for text in self.proven)
        lines.extend(f"NOT proven: {text}" for text in self.not_proven)
        return "\n".join(lines)


class _Stop(Exception):
    def __init__(self, error: VerifyError) -> None:
        self.error = error
