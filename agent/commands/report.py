"""``agent report --incident ID --format pdf|html|json -o FILE``: the counsel report, built from the audit log alone.

Why from the audit log and not the journal: the report must show what the tamper-evident record proves, and it
states the verification result and key fingerprint so counsel can check the same log independently.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent import exitcodes
from agent.app import App
from agent.errors import NotFound
from agent.output import color, emit_json

__all__ = ["run_report"]


def inventory_tags(app: App) -> dict[str, dict[str, Any]]:
    """What the inventory says each target holds (data categories, residents' states) for the report's scope."""
    inv = app.inventory
    tags: dict[str, dict[str, Any]] = {}
    for entry in [*inv.hosts.values(), *inv.devices.values(), *inv.directories.values()]:
        tags[entry.name] = {"kind": entry.kind, "data": list(entry.data), "residents": list(entry.residents),
                            "tags": list(entry.tags), "address": entry.address}
    return tags


def build_incident_report(app: App, incident: str, anchor: Any = None) -> tuple[Any, Any] | None:
    """The counsel report of ``incident`` from its audit records, and the audit summary it states; None when
    the audit log holds no records of it. ``agent report`` and the console's incident page both use this.

    ``anchor``: a parsed trust anchor (agent.audit.anchor) to verify against, or None.
    """
    from agent.audit import records, verify
    from agent.obligations import load_rules
    from agent.report import AuditSummary, build_report, from_records
    settings = app.settings
    app.drain_queued()  # the site workers' records of the incident, queued for this chain (docs/workers.md)
    incident_records = list(records(settings.audit_dir, incident))
    if not incident_records:
        return None
    key = settings.audit_signing_key
    pub = key.with_name(key.name + ".pub") if key else None
    summary = AuditSummary.from_verify(verify(settings.audit_dir, public_key=pub if pub and pub.exists() else None,
                                              anchor=anchor))
    data = from_records(incident_records, incident, inventory_tags(app), timezone=settings.timezone,
                        audit=summary, organisation_facts=settings.organisation)
    report = build_report(data, rules=load_rules(settings.obligations) if settings.obligations else None)
    return report, summary


def run_report(args: argparse.Namespace) -> int:
    from agent.audit.anchor import AnchorError, parse_anchor
    from agent.errors import InputError
    app = App(config_path=args.config)
    try:
        anchor = parse_anchor(getattr(args, "anchor", None), fingerprint=getattr(args, "expect_key", None))
    except AnchorError as exc:
        raise InputError(str(exc)) from None
    built = build_incident_report(app, args.incident, anchor if anchor.active else None)
    if built is None:
        raise NotFound(f"incident {args.incident!r} has no records in the audit log {app.settings.audit_dir} "
                       "(see `agent incidents list`)")
    report, summary = built
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "html":
        out.write_text(report.to_html(), encoding="utf-8")
    elif args.format == "json":
        out.write_text(report.to_json(), encoding="utf-8")
    else:
        report.to_pdf(out)
    if args.json:
        emit_json({"incident": args.incident, "format": args.format, "output": str(out),
                   "audit_ok": summary.ok})
    else:
        print(f"{color('wrote', 'green')} {out} ({args.format}) — for counsel's review, not legal advice")
    return exitcodes.DONE
