"""``agent audit ...``: fills in the audit directory and public key from agent.yaml, then runs the audit CLI.

The audit CLI itself (:mod:`agent.audit.cli`) works on bare exported files, so counsel can verify a log without
any configuration; this wrapper only saves the technician from typing paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.errors import AgentError
from agent.output import err

__all__ = ["run_audit"]


def _drain_queued(config: str | None, settings: Any) -> None:
    """On the host that writes the deployment's chain, append what the site workers queued first, so a
    verification, an anchor or an export right after a run covers every record of it (docs/workers.md)."""
    workers = settings.workers
    if workers is None or workers.audit == "outbox" or "://" not in settings.database:
        return
    from agent.app import App
    app = App(config_path=Path(config) if config else None)
    try:
        if not app.drain_queued():
            err("some records queued by the site workers could not be appended yet (another writer holds the "
                "chain, or the journal database is unreachable): they are not in what follows")
    finally:
        app.close()


def run_audit(argv: list[str], config: str | None) -> int:
    from agent.audit.cli import main as audit_main
    # `agent audit verify EXPORT.zip` needs no configuration: counsel runs it on files alone
    standalone = bool(argv) and argv[0] == "verify" and any(not a.startswith("-") for a in argv[1:2])
    if argv and argv[0] in ("verify", "export", "anchor") and "--dir" not in argv and not standalone:
        try:
            from agent.config import load_settings
            settings = load_settings(config)
        except AgentError as exc:
            err(f"{exc} (or pass --dir DIR)")
            return 2
        _drain_queued(config, settings)
        argv = [argv[0], "--dir", str(settings.audit_dir), *argv[1:]]
        key = settings.audit_signing_key
        pub = key.with_name(key.name + ".pub") if key is not None else None
        if argv[0] == "verify" and pub is not None and pub.exists() and "--public-key" not in argv:
            argv += ["--public-key", str(pub)]
        if argv[0] == "export":
            # the default export is complete: key, evidence, signed manifest, and the export itself audited
            if pub is not None and pub.exists() and "--public-key" not in argv:
                argv += ["--public-key", str(pub)]
            if key is not None and key.exists() and "--signing-key" not in argv:
                argv += ["--signing-key", str(key)]
            if "--evidence-dir" not in argv:
                argv += ["--evidence-dir", str(settings.evidence_dir)]
    code = audit_main(argv)
    if argv and argv[0] == "verify" and code == 1:
        from agent.exitcodes import NOT_VERIFIED
        return NOT_VERIFIED
    return code
