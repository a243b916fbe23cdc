"""Trust anchors: what verification compares the log against, so "verified" means more than "self-consistent".

Why: a hash chain checked against itself proves only that nobody edited a record *without rewriting everything
after it*. Whoever can write the files (an insider, ransomware with root) can cut the tail, delete the later
checkpoints, rewrite the chain from an earlier record, or sign with a key of their own — and a verifier that
only looks at the files says "OK". A trust anchor is something counsel received *earlier, out of band*:

* the expected public-key **fingerprint** (stops a key swap), and
* a **minimum head**: ``seq`` and ``hash`` of a record signed by a checkpoint (``agent audit anchor`` prints it;
  mail it, timestamp it under RFC 3161, or put it in a transparency log — see docs/audit-format.md).

With an anchor, verification fails when the key differs, when the record at the anchor's ``seq`` has another
hash (chain rewritten), when the log or its signed coverage ends before the anchor (tail cut, checkpoints
deleted), when more than ``max_unsigned`` records follow the last checkpoint, when the log starts after seq 1
(prefix cut; incident exports excepted) and when an incident export lacks its ``incident.opened`` record.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MAX_UNSIGNED", "NOT_PROVEN_WITHOUT_ANCHOR", "AnchorError", "TrustAnchor", "parse_anchor"]

#: Writers checkpoint every 1000 records, every 300 s and at close (docs/audit-format.md), so more unsigned
#: records than this after the last checkpoint means checkpoints were removed.
DEFAULT_MAX_UNSIGNED = 1000

NOT_PROVEN_WITHOUT_ANCHOR = (
    "without a trust anchor (--expect-key and --anchor) this proves only that the files are internally "
    "consistent and that their checkpoints were signed by the key given; it does NOT prove that the key is the "
    "agent's, that no records were cut from the end, or that the chain was not rewritten after the last "
    "checkpoint by someone without the key")

_PAIR = re.compile(r"(\d+):([0-9a-f]{64})")
_FPR = re.compile(r"ed25519:[0-9a-f]{64}")


class AnchorError(ValueError):
    """An anchor argument that cannot be read; the message names the value and the expected form."""


@dataclass(frozen=True)
class TrustAnchor:
    """What counsel received earlier. Any part may be absent; ``active`` says whether anything is anchored."""

    fingerprint: str | None = None
    seq: int | None = None
    hash: str | None = None
    max_unsigned: int = DEFAULT_MAX_UNSIGNED
    incident: str | None = None

    @property
    def active(self) -> bool:
        return self.fingerprint is not None or self.seq is not None

    def describe(self) -> str:
        parts = [f"key {self.fingerprint}"] if self.fingerprint else []
        if self.seq is not None:
            parts.append(f"head seq {self.seq} hash {self.hash}")
        return ", ".join(parts) or "none"


def parse_anchor(text: str | None, *, fingerprint: str | None = None, max_unsigned: int = DEFAULT_MAX_UNSIGNED,
                 incident: str | None = None) -> TrustAnchor:
    """Build an anchor from ``SEQ:HASH`` or a JSON file (``agent audit anchor --json`` output) and a fingerprint."""
    seq: int | None = None
    digest: str | None = None
    if fingerprint is not None and not _FPR.fullmatch(fingerprint):
        raise AnchorError(f"--expect-key {fingerprint!r}: expected ed25519:<64 hex digits> (as printed by "
                          "`agent audit init-key` and in every counsel report)")
    if text:
        match = _PAIR.fullmatch(text.strip())
        if match:
            seq, digest = int(match.group(1)), match.group(2)
        else:
            data = _anchor_file(text)
            seq, digest = int(data["seq"]), str(data["hash"])
            if fingerprint is None and data.get("fingerprint"):
                fingerprint = str(data["fingerprint"])
            if not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise AnchorError(f"--anchor {text}: hash {digest!r} is not 64 lowercase hex digits")
    if max_unsigned < 0:
        raise AnchorError(f"--max-unsigned {max_unsigned}: must not be negative")
    return TrustAnchor(fingerprint=fingerprint, seq=seq, hash=digest, max_unsigned=max_unsigned, incident=incident)


def _anchor_file(text: str) -> dict[str, Any]:
    path = Path(text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AnchorError(f"--anchor {text!r}: neither SEQ:HASH (e.g. 120:9f2c…, 64 hex digits) nor a readable "
                          f"file ({exc.strerror})") from None
    except ValueError:
        raise AnchorError(f"--anchor {text}: not JSON; expected the output of `agent audit anchor --json`") from None
    if not isinstance(data, dict) or "seq" not in data or "hash" not in data:
        raise AnchorError(f"--anchor {text}: needs the fields seq and hash")
    return data
