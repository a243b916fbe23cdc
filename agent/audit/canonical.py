"""Canonical encoding and hashing of audit records — the part a third-party verifier must match byte for byte.

Why a separate module: the writer, the verifier, the exporter and the documentation's reference verifier all
depend on exactly these few rules, so they live in one place with no third-party imports.

* The **body** of a record is every field except ``hash``.
* ``canonical(body)`` is ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
  encoded as UTF-8.
* version 1 (records without ``v``): ``hash = sha256(canonical(body)).hexdigest()``.
* version 2 (``"v": 2``, written since records of one incident had to be exportable without the others'):
  ``body_sha256 = sha256(canonical(body)).hexdigest()``, ``incident_tag = sha256(incident).hexdigest()`` (``-``
  when the record names no incident) and ``hash = sha256("containment-agent/audit-record/v2\n" + seq + "\n" +
  prev_hash + "\n" + incident_tag + "\n" + body_sha256 + "\n")`` — so another incident's record can be
  *withheld* from an export as a stub ``{body_sha256, incident_tag, prev_hash, seq, v, withheld}`` whose link in
  the chain still verifies and which provably is not a record of the exported incident.
* A line in a segment is ``canonical(body)`` with ``,"hash":"<hex>"`` inserted before the final ``}``, then ``\\n``
  (the writer serialises once). A verifier re-encodes the parsed body and requires the line to be exactly this
  form, which also rejects duplicate keys and hand-reformatted records.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "HEAD_FILE",
    "LOCK_FILE",
    "RECORD_DOMAIN",
    "RECORD_VERSION",
    "SEGMENT_GLOB",
    "STUB_KEYS",
    "body_hash",
    "canonical",
    "chain_hash",
    "encode_line",
    "incident_tag",
    "is_segment_name",
    "segment_name",
    "withheld_line",
]

GENESIS_HASH = "0" * 64
RECORD_VERSION = 2
RECORD_DOMAIN = b"containment-agent/audit-record/v2\n"
STUB_KEYS = frozenset({"body_sha256", "incident_tag", "prev_hash", "seq", "v", "withheld"})
SEGMENT_GLOB = "audit-*.jsonl"
HEAD_FILE = "audit.head"
LOCK_FILE = ".audit.lock"

_SEGMENT_RE = re.compile(r"audit-\d{4}-\d{2}-\d{2}\.jsonl")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _not_serialisable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# The C encoder ``JSONEncoder.encode`` builds afresh on every call, built once: the same bytes (same separators,
# key order, escaping and float repr; tested against json.dumps) for a third of the cost on the verify and append
# hot paths. No circular-reference markers: a record parsed from JSON cannot be circular.
_C_MAKE: Any = getattr(json.encoder, "c_make_encoder", None)  # CPython's _json accelerator (not in typeshed)
_C_ENCODE: Any = (_C_MAKE(None, _not_serialisable, json.encoder.encode_basestring, None, ":", ",", True, False, True)
                  if _C_MAKE is not None else None)
# The same encoder with ASCII escaping, which CPython's C code does about twice as fast as the Unicode form.
_C_ENCODE_ASCII: Any = (_C_MAKE(None, _not_serialisable, json.encoder.encode_basestring_ascii, None, ":", ",", True,
                                False, True) if _C_MAKE is not None else None)


def canonical(body: dict[str, Any]) -> bytes:
    """Serialise a record body the one way every verifier agrees on (same as ``json.dumps`` with those options).

    Records are mostly ASCII (plan previews of several KB among them), so the ASCII form is written first: when
    it holds no ``\\u`` escape, no character needed one, the two forms escape the rest (``\\"``, ``\\\\``,
    ``\\n``, ``\\t``, ...) identically, and it is the canonical form. Otherwise (non-ASCII text, DEL, control
    characters — or a literal backslash before a ``u``) the Unicode form is written as the rule says.
    """
    if _C_ENCODE is None:  # pragma: no cover - CPython always has the C accelerator
        return _ENCODER.encode(body).encode("utf-8")
    text = "".join(_C_ENCODE_ASCII(body, 0))
    if "\\u" not in text:
        return text.encode("ascii")
    return "".join(_C_ENCODE(body, 0)).encode("utf-8")


def incident_tag(incident: Any) -> str:
    """What a version-2 hash commits to about the record's incident: SHA-256 of its id, ``-`` for none."""
    return _tag(incident) if isinstance(incident, str) else "-"


@functools.lru_cache(maxsize=4096)  # a log names few incidents; verify asks once per record
def _tag(incident: str) -> str:
    return hashlib.sha256(incident.encode("utf-8")).hexdigest()


def chain_hash(seq: int, prev_hash: str, tag: str, body_sha256: str) -> str:
    """A version-2 record's ``hash``: its place in the chain, its incident tag and the digest of its body."""
    return hashlib.sha256(RECORD_DOMAIN + f"{seq}\n{prev_hash}\n{tag}\n{body_sha256}\n".encode("ascii")).hexdigest()


def _hash(body: dict[str, Any], raw: bytes) -> str:
    digest = hashlib.sha256(raw).hexdigest()
    if body.get("v") == RECORD_VERSION:
        return chain_hash(body["seq"], body["prev_hash"], incident_tag(body.get("incident")), digest)
    return digest


def body_hash(body: dict[str, Any]) -> str:
    """The record's ``hash`` field for ``body`` (the record without ``hash``), by the rule of its version."""
    return _hash(body, canonical(body))


def encode_line(body: dict[str, Any]) -> tuple[bytes, str]:
    """Return the segment line for ``body`` and its hash; the body is serialised exactly once."""
    raw = canonical(body)
    digest = _hash(body, raw)
    return raw[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n', digest


def withheld_line(body: dict[str, Any], stored_hash: str) -> bytes:
    """The stub that stands for a version-2 record in an export that must not show it (another incident's)."""
    stub = {"body_sha256": hashlib.sha256(canonical(body)).hexdigest(),
            "incident_tag": incident_tag(body.get("incident")), "prev_hash": body["prev_hash"],
            "seq": body["seq"], "v": RECORD_VERSION, "withheld": True}
    return canonical(stub)[:-1] + b',"hash":"' + stored_hash.encode("ascii") + b'"}\n'


def segment_name(day: str) -> str:
    """File name of the segment holding records stamped on UTC day ``day`` (``YYYY-MM-DD``)."""
    return f"audit-{day}.jsonl"


def is_segment_name(name: str) -> bool:
    """True for ``audit-YYYY-MM-DD.jsonl``; segments sort chronologically by name."""
    return _SEGMENT_RE.fullmatch(name) is not None
