"""Canonical encoding and hashing of audit records — the part a third-party verifier must match byte for byte.

Why a separate module: the writer, the verifier, the exporter and the documentation's reference verifier all
depend on exactly these few rules, so they live in one place with no third-party imports.

* The **body** of a record is every field except ``hash``.
* ``canonical(body)`` is ``json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
  encoded as UTF-8.
* ``hash = sha256(canonical(body)).hexdigest()``.
* A line in a segment is ``canonical(body)`` with ``,"hash":"<hex>"`` inserted before the final ``}``, then ``\\n``
  (the writer serialises once). A verifier re-encodes the parsed body and requires the line to be exactly this
  form, which also rejects duplicate keys and hand-reformatted records.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

__all__ = [
    "GENESIS_HASH",
    "HEAD_FILE",
    "LOCK_FILE",
    "SEGMENT_GLOB",
    "body_hash",
    "canonical",
    "encode_line",
    "is_segment_name",
    "segment_name",
]

GENESIS_HASH = "0" * 64
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


def canonical(body: dict[str, Any]) -> bytes:
    """Serialise a record body the one way every verifier agrees on (same as ``json.dumps`` with those options)."""
    if _C_ENCODE is None:  # pragma: no cover - CPython always has the C accelerator
        return _ENCODER.encode(body).encode("utf-8")
    return "".join(_C_ENCODE(body, 0)).encode("utf-8")


def body_hash(body: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical body — the record's ``hash`` field."""
    return hashlib.sha256(canonical(body)).hexdigest()


def encode_line(body: dict[str, Any]) -> tuple[bytes, str]:
    """Return the segment line for ``body`` and its hash; the body is serialised exactly once."""
    raw = canonical(body)
    digest = hashlib.sha256(raw).hexdigest()
    return raw[:-1] + b',"hash":"' + digest.encode("ascii") + b'"}\n', digest


def segment_name(day: str) -> str:
    """File name of the segment holding records stamped on UTC day ``day`` (``YYYY-MM-DD``)."""
    return f"audit-{day}.jsonl"


def is_segment_name(name: str) -> bool:
    """True for ``audit-YYYY-MM-DD.jsonl``; segments sort chronologically by name."""
    return _SEGMENT_RE.fullmatch(name) is not None
