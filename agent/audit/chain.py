"""Offline verification of an audit directory: hash chain, sequence, canonical form, checkpoint signatures, anchor.

Why offline and stdlib-first: counsel's expert gets a folder of ``.jsonl`` files and a public key, nothing else.
The algorithm here is the one documented in docs/audit-format.md; ``cryptography`` is imported only when a
public key is given. The reasons it stops for and the report it returns live in :mod:`agent.audit.verdict`.
"""

from __future__ import annotations

import hashlib
import json
import json.scanner
import os
from pathlib import Path
from typing import Any

from agent.audit.anchor import NOT_PROVEN_WITHOUT_ANCHOR, TrustAnchor
from agent.audit.canonical import (
    GENESIS_HASH,
    HEAD_FILE,
    RECORD_VERSION,
    STUB_KEYS,
    canonical,
    chain_hash,
    incident_tag,
)
from agent.audit.segments import list_segments
from agent.audit.verdict import (
    ANCHOR_BEYOND,
    ANCHOR_COVERAGE,
    ANCHOR_KEY,
    ANCHOR_NEEDS_KEY,
    ANCHOR_REWRITTEN,
    ANCHOR_UNSIGNED,
    BAD_COVER,
    BAD_GENESIS,
    BAD_SIGNATURE,
    BROKEN_LINK,
    EDITED,
    HEAD_MISMATCH,
    MALFORMED,
    NOT_CANONICAL,
    NO_OPENING,
    PREFIX_CUT,
    SEQ_GAP,
    TRUNCATED_LINE,
    TRUNCATED_SEGMENT,
    VerifyError,
    VerifyReport,
    WITHHELD_IN_LOG,
    WITHHELD_OURS,
    WRONG_KEY,
    _Stop,
)

__all__ = ["CHECKPOINT_EVENT", "verify"]

CHECKPOINT_EVENT = "audit.checkpoint"
#: Below this much data one process is faster than starting workers (agent/audit/parallel.py).
PARALLEL_MIN_BYTES = 32 * 1024 * 1024
#: json's C scanner called directly (what ``decode`` does after two whitespace regex matches per line).
_SCAN: Any = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: context

def verify(directory: Path, *, public_key: Path | None = None, from_seq: int | None = None,
           to_seq: int | None = None, anchor: TrustAnchor | None = None,
           allow_withheld: bool = False, workers: int | None = None, chunks: int | None = None) -> VerifyReport:
    """Check every segment in ``directory`` (optionally only seqs ``from_seq..to_seq``) and return a report.

    ``anchor``: what counsel received earlier (see :mod:`agent.audit.anchor`); without one the report's
    ``not_proven`` says what the files alone cannot show. ``allow_withheld``: an export, where other incidents'
    records may stand as stubs (never the anchored incident's own). ``workers``: processes for a whole-log check
    (default: the cores available once the log is large, see :mod:`agent.audit.parallel`); ``chunks``: how many
    ranges to cut it into (tests).
    """
    directory = Path(directory)
    key: Any = None
    fingerprint: str | None = None
    if public_key is not None:
        from agent.audit.keys import fingerprint as make_fingerprint
        from agent.audit.keys import load_public_key, public_raw

        key = load_public_key(Path(public_key))
        fingerprint = make_fingerprint(public_raw(key))
    report = VerifyReport(ok=True, records=0, first_error=None, checkpoints_verified=0, key_fingerprint=fingerprint)
    segments = list_segments(directory)
    report.segments = [path.name for path in segments]
    if not segments:
        report.ok = False
        report.first_error = VerifyError(str(directory), 0, None, "no audit segments (audit-*.jsonl) found")
        return report
    head = _read_head(directory, report)
    state = _State(key, fingerprint, from_seq, to_seq, head, anchor)
    state.allow_withheld = allow_withheld
    try:
        try:
            if from_seq is None and to_seq is None and _parallel(segments, workers) > 1:
                from agent.audit.parallel import verify_chunks

                verify_chunks(segments, state, report, public_key, _parallel(segments, workers), chunks)
            else:
                for index, path in enumerate(segments):
                    state.check_segment(path, last=index == len(segments) - 1, report=report)
        except _Done:
            pass
        state.finish(report)
        if anchor is not None and (anchor.active or anchor.incident):
            _check_anchor(anchor, state, report)
    except _Stop as stop:
        report.ok = False
        report.first_error = stop.error
    report.unsigned_after_checkpoint = state.unsigned
    report.withheld = state.withheld
    if state.withheld:
        report.notes.append(f"{state.withheld} record(s) of other incidents are withheld (stubs): their place in the "
                            "chain and their incident tag verify, their content is not shown")
    _statements(report, anchor)
    return report


def _parallel(segments: list[Path], workers: int | None) -> int:
    """Worker processes to use: as asked, else several only for logs big enough to repay starting them."""
    if workers is not None:
        return workers
    if sum(p.stat().st_size for p in segments) < PARALLEL_MIN_BYTES:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))  # beyond four, reading the files is the limit


def _check_anchor(anchor: TrustAnchor, state: _State, report: VerifyReport) -> None:
    """Compare the verified log with what counsel received earlier; the first mismatch stops verification."""
    def stop(reason: str, seq: int | None = None) -> _Stop:
        return _Stop(VerifyError("(trust anchor)", 0, seq, reason))

    report.anchor = anchor.describe()
    if anchor.fingerprint is not None:
        if state.key is None:
            raise stop(ANCHOR_NEEDS_KEY)
        if state.fingerprint != anchor.fingerprint:
            raise stop(f"{ANCHOR_KEY}: given {state.fingerprint}, expected {anchor.fingerprint}")
    if anchor.incident is not None and anchor.incident not in state.opened:
        raise stop(f"{NO_OPENING}: {anchor.incident}", report.first_seq)
    if anchor.incident is None and anchor.active and report.first_seq not in (None, 1) and state.from_seq is None:
        raise stop(f"{PREFIX_CUT}: first record is seq {report.first_seq}", report.first_seq)
    if anchor.seq is not None:
        if state.key is None:
            raise stop(ANCHOR_NEEDS_KEY)
        if (report.last_seq or 0) < anchor.seq:
            raise stop(f"{ANCHOR_BEYOND}: last record seq {report.last_seq}, anchor seq {anchor.seq}",
                       report.last_seq)
        if state.anchor_hash is not None and state.anchor_hash != anchor.hash:
            raise stop(f"{ANCHOR_REWRITTEN}: seq {anchor.seq} has {state.anchor_hash}, anchor says {anchor.hash}",
                       anchor.seq)
        if state.anchor_hash is None:
            report.notes.append(f"the anchor (seq {anchor.seq}) precedes this excerpt: its hash is not compared; "
                                "signed coverage is")
        if (report.last_checkpoint_seq or 0) < anchor.seq:
            raise stop(f"{ANCHOR_COVERAGE}: last signed record seq {report.last_checkpoint_seq}, anchor seq "
                       f"{anchor.seq}", report.last_checkpoint_seq)
    if anchor.active and state.key is not None and state.unsigned > anchor.max_unsigned:
        raise stop(f"{ANCHOR_UNSIGNED}: {state.unsigned} > {anchor.max_unsigned}", report.last_seq)


def _statements(report: VerifyReport, anchor: TrustAnchor | None) -> None:
    """Say in words what this verification shows and what it cannot (printed by the CLI and the report)."""
    if not report.ok:
        report.not_proven.append("the log failed verification: nothing after the first error can be relied on")
        return
    report.proven.append(f"records seq {report.first_seq}..{report.last_seq} are internally consistent "
                         "(hash chain, sequence, canonical form)")
    if report.checkpoints_verified:
        report.proven.append(f"records up to seq {report.last_checkpoint_seq} were signed by {report.key_fingerprint}")
    if report.unsigned_after_checkpoint:
        report.not_proven.append(f"{report.unsigned_after_checkpoint} record(s) after seq "
                                 f"{report.last_checkpoint_seq or 0} are not signed by any checkpoint")
    if anchor is not None and anchor.active:
        if anchor.fingerprint:
            report.proven.append(f"the signing key is the expected one ({anchor.fingerprint})")
        if anchor.seq is not None:
            report.proven.append(f"the log still contains, unchanged and signed, everything up to the anchor "
                                 f"(seq {anchor.seq}) counsel received earlier")
        if not anchor.fingerprint:
            report.not_proven.append("that the key is the agent's (no expected fingerprint given)")
    else:
        report.not_proven.append(NOT_PROVEN_WITHOUT_ANCHOR)


def _read_head(directory: Path, report: VerifyReport) -> dict[str, Any] | None:
    path = directory / HEAD_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        head = json.loads(text)
        return {"seq": int(head["seq"]), "hash": str(head["hash"])}
    except (ValueError, KeyError, TypeError):
        report.notes.append(f"{HEAD_FILE} is unreadable (torn by a power failure?); tail truncation not checked")
        return None


class _State:
    """Running chain state across segments."""

    def __init__(self, key: Any, fingerprint: str | None, from_seq: int | None, to_seq: int | None,
                 head: dict[str, Any] | None, anchor: TrustAnchor | None = None) -> None:
        self.key, self.fingerprint = key, fingerprint
        self.from_seq, self.to_seq = from_seq, to_seq
        self.head = head
        self.prev_seq: int | None = None
        self.prev_hash: str | None = None
        self.unsigned = 0
        self.watch_seq = anchor.seq if anchor is not None else None
        self.watch_incident = anchor.incident if anchor is not None else None
        self.anchor_hash: str | None = None
        self.opened: set[str] = set()
        self.allow_withheld = False
        self.withheld = 0
        self.first_prev_hash: str | None = None

    def check_segment(self, path: Path, *, last: bool, report: VerifyReport) -> None:
        name = path.name
        check_line = self.check_line
        with path.open("rb") as handle:
            for lineno, line in enumerate(handle, 1):
                if not line.endswith(b"\n"):
                    if last and self._is_final(handle):
                        report.notes.append(f"{name}:{lineno}: incomplete final line ({len(line)} bytes) "
                                            "ignored — a writer was killed mid-write; it was never committed")
                        return
                    raise _Stop(VerifyError(name, lineno, self._next_seq(), TRUNCATED_LINE))
                check_line(name, lineno, line, report)

    @staticmethod
    def _is_final(handle: Any) -> bool:
        return bool(handle.read(1) == b"")

    def _next_seq(self) -> int | None:
        return None if self.prev_seq is None else self.prev_seq + 1

    def check_line(self, name: str, lineno: int, line: bytes, report: VerifyReport) -> None:
        def fail(reason: str, seq: int | None) -> _Stop:
            return _Stop(VerifyError(name, lineno, seq, reason))

        try:
            text = line.decode("utf-8")
            record, end = _SCAN(text, 0)
            if end != len(text) - 1:  # anything but the newline after the object: not one record per line
                raise ValueError(text)
            stored = record.pop("hash")
            seq = record["seq"]
            prev_hash = record["prev_hash"]
        except (ValueError, KeyError, TypeError, AttributeError, StopIteration):
            raise fail(MALFORMED, self._next_seq()) from None
        if not isinstance(seq, int) or not isinstance(stored, str) or not isinstance(prev_hash, str):
            raise fail(MALFORMED, self._next_seq())
        if self.to_seq is not None and seq > self.to_seq:
            raise _Done()
        in_range = self.from_seq is None or seq >= self.from_seq
        if not in_range:  # before the requested range: only remember where the chain stands
            self.prev_seq, self.prev_hash = seq, stored
            return
        body = canonical(record)
        if record.get("v") == RECORD_VERSION:
            if record.get("withheld") is True:
                self._check_stub(record, seq, prev_hash, stored, fail)
            elif chain_hash(seq, prev_hash, incident_tag(record.get("incident")),
                            hashlib.sha256(body).hexdigest()) != stored:
                raise fail(EDITED, seq)
        elif hashlib.sha256(body).hexdigest() != stored:
            raise fail(EDITED, seq)
        if body[:-1] + b',"hash":"' + stored.encode() + b'"}\n' != line:
            raise fail(NOT_CANONICAL, seq)
        if self.prev_hash is None:
            self.first_prev_hash = prev_hash
            if seq == 1 and prev_hash != GENESIS_HASH:
                raise fail(BAD_GENESIS, seq)
            if seq != 1 and self.from_seq is None:
                report.notes.append(f"log starts at seq {seq}: earlier records are not present (excerpt); "
                                    "the chain is verified from there")
        else:
            if prev_hash != self.prev_hash:
                raise fail(BROKEN_LINK, seq)
            if seq != (self.prev_seq or 0) + 1:
                raise fail(SEQ_GAP, seq)
        event = record.get("event")
        if event == CHECKPOINT_EVENT:
            self._check_checkpoint(record, seq, prev_hash, fail, report)
        else:
            self.unsigned += 1
            if event == "incident.opened" and self.watch_incident is not None:
                self.opened.add(str(record.get("incident")))
        if seq == self.watch_seq:
            self.anchor_hash = stored
        report.records += 1
        if report.first_seq is None:
            report.first_seq = seq
        report.last_seq, report.last_hash = seq, stored
        if self.head is not None and seq == self.head["seq"] and stored != self.head["hash"]:
            raise fail(HEAD_MISMATCH, seq)
        self.prev_seq, self.prev_hash = seq, stored

    def _check_stub(self, record: dict[str, Any], seq: int, prev_hash: str, stored: str, fail: Any) -> None:
        """A withheld record (exports only): its link must verify and it must not be the exported incident's."""
        if not self.allow_withheld:
            raise fail(WITHHELD_IN_LOG, seq)
        if set(record) != STUB_KEYS or not isinstance(record["body_sha256"], str) \
                or not isinstance(record["incident_tag"], str):
            raise fail(MALFORMED, seq)
        if chain_hash(seq, prev_hash, record["incident_tag"], record["body_sha256"]) != stored:
            raise fail(EDITED, seq)
        if self.watch_incident is not None and record["incident_tag"] == incident_tag(self.watch_incident):
            raise fail(f"{WITHHELD_OURS}: {self.watch_incident}", seq)
        self.withheld += 1

    def _check_checkpoint(self, record: dict[str, Any], seq: int, prev_hash: str, fail: Any,
                          report: VerifyReport) -> None:
        if record.get("covers_seq") != seq - 1 or record.get("covers_hash") != prev_hash:
            raise fail(BAD_COVER, seq)
        if self.key is None:
            return
        from agent.audit.keys import verify_checkpoint_signature

        if record.get("key_fingerprint") != self.fingerprint:
            raise fail(f"{WRONG_KEY}: signed by {record.get('key_fingerprint')}, given {self.fingerprint}", seq)
        if not verify_checkpoint_signature(self.key, seq - 1, prev_hash, str(record.get("signature", ""))):
            raise fail(BAD_SIGNATURE, seq)
        report.checkpoints_verified += 1
        report.last_checkpoint_seq = seq - 1
        report.last_checkpoint_hash = prev_hash
        self.unsigned = 0

    def finish(self, report: VerifyReport) -> None:
        if self.head is not None and self.to_seq is None and (self.prev_seq or 0) < self.head["seq"]:
            raise _Stop(VerifyError(report.segments[-1], 0, self.prev_seq,
                                    f"{TRUNCATED_SEGMENT}: last record is seq {self.prev_seq}, "
                                    f"head file says seq {self.head['seq']}"))
        if self.key is None:
            report.notes.append("no public key given: checkpoint signatures were NOT checked (chain only)")
        elif self.unsigned:
            report.notes.append(f"{self.unsigned} record(s) after the last checkpoint are chained but not yet "
                                "signed (a checkpoint is written every N records, every T seconds and at close)")
        if self.key is not None and report.checkpoints_verified == 0 and report.records:
            report.notes.append("no signed checkpoint in range: nothing proves these records came from the key holder")


class _Done(Exception):
    """Reached ``to_seq``."""
