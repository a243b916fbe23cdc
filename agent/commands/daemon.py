"""``agent daemon`` and the approval commands ``agent approvals``, ``agent approve ID``, ``agent deny ID``.

``approve`` runs the approved plan in this process (from wherever the command runs — the management host),
with ``approved_by`` = the technician (``user@host``); a daemon running at the same time schedules the TTL
release of what it applied at its next sweep. Exit codes: 0 done, 1 failed, 2 usage (unknown id, already
decided or expired), 3 refused by a guard, 4 partial.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent import exitcodes
from agent.app import App
from agent.output import color, emit_json, state_color

__all__ = ["run_approvals", "run_automation", "run_daemon", "run_worker"]


def run_daemon(args: argparse.Namespace) -> int:
    from agent.app import App
    from agent.daemon import Daemon, daemon_actor
    app = App(config_path=args.config, actor=daemon_actor())
    try:
        daemon = Daemon(app, listen=args.listen)
        print(f"agent daemon: listening on {daemon.host}:{daemon.port} (SIGTERM or Ctrl-C stops it)", flush=True)
        return daemon.run()
    finally:
        app.close()


def run_worker(args: argparse.Namespace) -> int:
    """``agent worker --site S``: consume site S's queue until SIGTERM (agent/workers/worker.py)."""
    from agent.errors import InputError
    from agent.workers.config import SITE_NAME
    from agent.workers.worker import serve
    if not SITE_NAME.fullmatch(args.site):
        raise InputError(f"--site {args.site!r}: a site name is letters, digits, '.', '_' or '-'")
    app = App(config_path=args.config, actor=f"worker:{args.site}@{__import__('socket').gethostname()}",
              audit_role="outbox")  # the deployment's one chain is written by its core, never by a site
    try:
        _refuse_audit_key(app)
        known = {e.site for section in (app.inventory.hosts, app.inventory.devices, app.inventory.directories)
                 for e in section.values() if e.site}
        if args.site not in known:
            raise InputError(f"--site {args.site!r}: no target of this worker's inventory is at that site "
                             f"(sites: {', '.join(sorted(known)) or 'none'})")
        slots = args.slots or app.settings.max_parallel
        if slots < 1:
            raise InputError(f"--slots {slots}: at least 1")
        print(f"agent worker: site {args.site}, {slots} slots (SIGTERM stops it after the running actions)",
              flush=True)
        return serve(app, args.site, slots)
    finally:
        app.close()


def _refuse_audit_key(app: App) -> None:
    """A site worker never holds the deployment's audit signing key (docs/audit-format.md, "One chain per
    deployment": the sites, next to the compromised hosts, are where a key is most likely stolen). Its records
    go to the chain's writer through the journal database, so a key configured here would be unused — refused
    rather than ignored, so nobody believes the site signs anything."""
    from agent.errors import ConfigError
    settings = app.settings
    if settings.audit_signing_key is not None:
        raise ConfigError(f"audit_signing_key: {settings.audit_signing_key}: a site worker does not sign the audit "
                          "log and must not hold its key — its records are appended to the deployment's one chain "
                          "by the core that owns it (docs/workers.md); remove audit_signing_key from this "
                          "worker's agent.yaml", file=str(settings.path), field="audit_signing_key")
    if settings.workers is not None and settings.workers.audit == "writer":
        raise ConfigError("workers.audit: writer: a site worker never writes the audit chain (its records go to "
                          "the deployment's writer); remove it or write outbox", file=str(settings.path),
                          field="workers.audit")


def run_approvals(args: argparse.Namespace) -> int:
    app = App(config_path=args.config)
    try:
        if args.command == "approvals":
            return _list(app, args)
        return _decide(app, args)
    finally:
        app.close()


def _list(app: App, args: argparse.Namespace) -> int:
    from agent.approvals import approval_dict, expire_due, list_approvals
    expire_due(app.store, app.audit)
    rows = [approval_dict(r) for r in list_approvals(app.store, None if args.all else "pending")]
    if args.json:
        emit_json({"approvals": rows})
        return exitcodes.DONE
    if not rows:
        print("No approvals waiting." if not args.all else "No approvals.")
        return exitcodes.DONE
    for r in rows:
        status = r["status"] if r["status"] != "pending" else color("pending", "yellow")
        print(f"{r['id']}  {status:<8} {r['runbook']} on {r['target']}  incident {r['incident']}")
        print(color(f"          why: {r['why']}", "dim"))
        if r["status"] == "pending":
            print(color(f"          expires {r['expires_at']}", "dim"))
        elif r["decided_by"]:
            print(color(f"          {r['status']} by {r['decided_by']}: {r['decision_reason']}", "dim"))
    if not args.all:
        print("\nDecide with: agent approve ID --reason '...'  |  agent deny ID --reason '...'")
    return exitcodes.DONE


def _decide(app: App, args: argparse.Namespace) -> int:
    from agent.approvals import approval_dict, decide, plan_for
    from agent.approvals import authorize_decision
    approve = args.command == "approve"
    authorize_decision(app.store, app.audit, args.id, app.actor, channel="cli",
                       four_eyes=bool(app.settings.console.get("four_eyes", True)))
    row = decide(app.store, app.audit, args.id, approve=approve, by=app.actor, reason=args.reason)
    if not approve:
        from agent.intake.claims import denied
        if denied(app.store.engine, row.incident_id):  # no dedupe claim; closed when nothing was applied
            app.audit.record("incident.closed", incident=row.incident_id,
                             reason=f"approval {row.id} denied by {app.actor}", incident_status="closed")
        if args.json:
            emit_json({"approval": approval_dict(row)})
        else:
            print(f"Denied {row.id} ({row.runbook} on {row.target}); nothing was run.")
        return exitcodes.DONE
    plan, ttl, reason = plan_for(app, row)
    return _execute(app, args, row, plan, ttl, reason)


def _execute(app: App, args: argparse.Namespace, row: Any, plan: Any, ttl: Any, reason: str) -> int:
    from agent.approvals import approval_dict
    from agent.reconcile import reconcile
    engine = app.engine()
    reconcile(engine)
    if not args.json:
        print(color(f"Approved {row.id}: running {plan.runbook.name} on {row.target} (incident {row.incident_id})",
                    "bold"))
    result = engine.execute(plan, row.incident_id, reason=reason, ttl=ttl, approved_by=app.actor)
    if args.json:
        emit_json({"approval": approval_dict(row), **result.to_dict()})
    else:
        for o in result.outcomes:
            print(f"  {o.target:<14} {o.step:<10} {state_color(o.state):<6} {o.summary}")
        print(f"Result: {state_color(result.status)} — incident {row.incident_id}")
    return {"done": exitcodes.DONE, "partial": exitcodes.PARTIAL,
            "refused": exitcodes.REFUSED}.get(result.status, exitcodes.FAILED)


def run_automation(args: argparse.Namespace) -> int:
    """``agent automation pause|resume|status``: the brake on every ``auto`` rule (see agent.intake.automation)."""
    from agent.intake.automation import automation_state, set_automation
    app = App(config_path=args.config)
    try:
        verb = args.automation_command
        if verb == "status":
            state = automation_state(app.store)
        else:
            state = set_automation(app.store, app.audit, paused=verb == "pause", by=app.actor,
                                   reason=args.reason or "")
        if args.json:
            emit_json({"automation": state.to_dict()})
        elif state.paused:
            print(color("Automation is PAUSED", "yellow") + f": every auto rule asks for approval "
                  f"(paused by {state.changed_by} at {state.changed_at:%Y-%m-%d %H:%M:%S}Z"
                  f"{'; ' + state.reason if state.reason else ''}).")
            print("Resume with: agent automation resume --reason '...'")
        else:
            print("Automation is running: rules act under their own policy"
                  + (f" (resumed by {state.changed_by})." if state.changed_by else "."))
        return exitcodes.DONE
    finally:
        app.close()
