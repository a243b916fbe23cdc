"""Tamper-evident audit log: hash-chained, Ed25519-checkpointed JSONL segments, verifiable offline.

Public API (the engine, the CLI and the report use only these)::

    with AuditLog(Path("var/audit"), signing_key=Path("var/audit-signing.key")) as log:
        log.record("action.done", incident="INC-1", target="victim")
    report = verify(Path("var/audit"), public_key=Path("var/audit-signing.key.pub"))
    for rec in records(Path("var/audit"), incident="INC-1"): ...

Everything here is stdlib-only at import time; ``cryptography`` loads only when a key is used.
The on-disk format is specified in docs/audit-format.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.audit.processors import Redactor, add_context, add_timestamp
    from agent.audit.anchor import TrustAnchor
    from agent.audit.export import ExportResult, export_incident, verify_export
    from agent.audit.reader import records
    from agent.audit.redact import redact_text, redact_value
    from agent.audit.chain import verify
    from agent.audit.verdict import VerifyError, VerifyReport
    from agent.audit.writer import AuditClosedError, AuditLog

#: Lazy exports: ``agent audit verify`` should not pay for the writer, and the writer not for the exporter.
_EXPORTS = {
    "AuditLog": "writer", "AuditClosedError": "writer",
    "VerifyError": "verdict", "VerifyReport": "verdict", "verify": "chain",
    "records": "reader", "export_incident": "export", "ExportResult": "export", "verify_export": "export",
    "TrustAnchor": "anchor",
    "Redactor": "processors", "add_context": "processors", "add_timestamp": "processors",
    "redact_text": "redact", "redact_value": "redact",
}

__all__ = [
    "AuditClosedError",
    "AuditLog",
    "ExportResult",
    "Redactor",
    "TrustAnchor",
    "VerifyError",
    "VerifyReport",
    "add_context",
    "add_timestamp",
    "export_incident",
    "records",
    "redact_text",
    "redact_value",
    "verify",
    "verify_export",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agent.audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"agent.audit.{module}"), name)
    globals()[name] = value
    return value
