"""Read-only commands: ``status`` (what is contained now) and ``incidents list|show``."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent import exitcodes
from agent.app import App
from agent.errors import NotFound
from agent.output import color, emit_json, state_color, table, terminal_width

if TYPE_CHECKING:
    from agent.store import Action, ActionItem

__all__ = ["run_query"]

IRREVERSIBLE_NOTE = ("a done, not reversible change (e.g. reset_password) is never \"released\"; it is listed "
                     "while other containment of the same account or host is active, then only in the incident")


def _split_irreversible(rows: list[Action]) -> tuple[list[Action], list[Action]]:
    """(reversible active actions, irreversible ones still worth showing).

    An irreversible action (a password reset) cannot be released, so "until released" would be a lie and it
    would stay in the status forever. It is shown, marked permanent, while a reversible action on the same
    target and subject is still active (the account is still disabled); after enable-account it is history
    (``agent incidents show``)."""
    active = [a for a in rows if a.reversible]
    live = {(a.target, a.subject) for a in active}
    return active, [a for a in rows if not a.reversible and (a.target, a.subject) in live]


def _say(text: str, colour: str) -> None:
    """A note under a table, wrapped to the terminal (a leading blank line is kept)."""
    import textwrap
    head = "\n" if text.startswith("\n") else ""
    print(head + color(textwrap.fill(text.lstrip("\n"), width=terminal_width()), colour))


def _when(when: datetime | None, now: datetime) -> str:
    """A time at a glance: today's as HH:MM:SSZ, another day's with its date."""
    if when is None:
        return ""
    return when.strftime("%H:%MZ" if when.date() == now.date() else "%Y-%m-%d %H:%MZ")


def _span(seconds: float) -> str:
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


_RESULT_WORDS = {"in_effect": "in effect", "drift": "DRIFT", "unverified": "UNVERIFIED"}
_BY = {"apply": "run", "status --verify": "verify", "daemon": "daemon"}


def _verified(check: Any, now: datetime) -> str:
    """'in effect 3m ago (verify)': the result of the newest read-back, how old it is, who read it."""
    if check is None:
        return color("never", "yellow")
    word = _RESULT_WORDS.get(check.result, check.result)
    text = f"{word} {_span((now - check.at).total_seconds())} ago ({_BY.get(check.cause, check.cause)})"
    return color(text, "green" if check.result == "in_effect" else "red")


def _timer(timer: dict[str, Any] | None, now: datetime) -> str:
    """The dead-man timer as the journal recorded it at apply (``agent status --verify`` reads the live one)."""
    if timer is None:
        return "none"
    if timer["state"] == "cancelled":
        return "confirmed, cancelled"
    due = datetime.fromisoformat(timer["reverts_at"]) if timer.get("reverts_at") else None
    if timer["state"] == "expired":
        return color(f"fired? due {_when(due, now)}", "red")
    return color(f"ARMED, reverts in {_span((due - now).total_seconds())}" if due else "ARMED", "yellow")


def _ttl(expires_at: datetime | None, now: datetime) -> str:
    if expires_at is None:
        return "until released"
    if expires_at <= now:
        return color("OVERDUE — run `agent sweep`", "red")
    left = (expires_at - now).total_seconds()
    # within a day "in 1h59m" already says which day, so the clock time goes without a date: the column stays
    # narrow enough for the table to fit 120 columns at any hour (past 22:00 a 2 h TTL used to carry one)
    return f"in {_span(left)}, {expires_at.strftime('%H:%MZ') if left < 86400 else _when(expires_at, now)}"


def run_query(args: argparse.Namespace) -> int:
    app = App(config_path=args.config)
    try:
        if args.command == "status":
            return _status(app, args)
        if getattr(args, "incidents_command", None) == "show":
            return _show(app, args)
        if getattr(args, "incidents_command", None) == "facts":
            return _facts(app, args)
        return _list(app, args)
    finally:
        app.close()


def _verify(app: App, args: argparse.Namespace) -> int:
    """``status --verify``: every active containment read back now; drift or unreadable targets exit 4."""
    from agent.containments import verify_all
    checks = verify_all(app)
    bad = [c for c in checks if c.state != "in_effect"]
    if args.json:
        emit_json({"verified": [c.to_dict() for c in checks], "drift": len([c for c in bad if c.state == "drift"]),
                   "unverified": len([c for c in bad if c.state == "unverified"])})
    elif not checks:
        print(color("Nothing is contained.", "green"))
    else:
        rows = []
        for c in checks:
            shown = ", ".join(c.drifted or c.items[:3]) + ("" if c.drifted or len(c.items) <= 3
                                                             else f" and {len(c.items) - 3} more")
            word = {"in_effect": "in effect", "drift": "DRIFT", "unverified": "UNVERIFIED"}[c.state]
            rows.append((c.action.target, f"{c.action.action} {shown}", c.action.incident_id, word, c.summary))
        print(table(rows, ("TARGET", "ACTION", "INCIDENT", "NOW", "READ BACK"), width=terminal_width()))
        for c in checks:  # read by a worker of the target's site: the central has no credentials for it
            if c.by:
                at = f" at {c.at.strftime('%H:%M:%SZ')}" if c.at else ""
                _say(f"{c.action.target}: read by {c.action.site} worker {c.by}{at}", "dim")
        _say("recorded in the journal: `agent status` shows these as LAST VERIFIED", "dim")
        if bad:
            _say(f"\n{len(bad)} of {len(checks)} containment(s) not confirmed in effect (audited); "
                 "re-apply with the same command, or release what is no longer wanted", "red")
    return exitcodes.PARTIAL if bad else exitcodes.DONE


def _status(app: App, args: argparse.Namespace) -> int:
    if getattr(args, "verify", False):
        return _verify(app, args)
    from datetime import UTC

    from agent import journal_reads
    from agent.proof import checks_in, timer_of, ttl_of
    now = datetime.now(UTC)
    with app.store.session() as s:  # one read transaction: the sections agree with each other
        active = journal_reads.contained(s)
        unfinished = journal_reads.unfinished(s)
        doubtful = journal_reads.in_doubt(s)
        if active:  # lifting actions (unblock) are never "contained" state; their connectors advertise which
            active = [a for a in active if not app.registry.words(a.connector, a.action).lifts]
        active, permanent = _split_irreversible(active)
        checks = checks_in(s, [a.id for a in (*active, *doubtful)])
    if args.json:
        def proof(a: Action) -> dict[str, Any]:
            check = checks.get(a.id)
            return {"last_verified": check.to_dict() if check else None, "timer": timer_of(a, now),
                    "ttl": ttl_of(a, now)}
        emit_json({"active": [{**a.summary(), "items": [i.summary() for i in _live(a)], **proof(a)} for a in active],
                   "unfinished": [a.summary() for a in unfinished],
                   "in_doubt": [{**a.summary(), **proof(a)} for a in doubtful],
                   "irreversible": [{**a.summary(), "note": IRREVERSIBLE_NOTE} for a in permanent]})
        return exitcodes.DONE
    if not active and not unfinished and not permanent and not doubtful:
        print(color("Nothing is contained.", "green"))
        return exitcodes.DONE
    width = terminal_width()
    rows = []
    for a in active:
        live = _live(a)
        verb = app.registry.words(a.connector, a.action).active_as or a.action  # "isolated", "blocked"
        if a.target_kind == "host":
            what = verb
        elif len(a.items) > 1:
            names = [i.requested for i in live]
            what = f"{verb} {', '.join(names[:3])}" + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        else:
            what = f"{verb} {a.subject}"
        rows.append((a.target, what, a.incident_id, _when(a.updated_at, now), _verified(checks.get(a.id), now),
                     _timer(timer_of(a, now), now), _ttl(a.expires_at, now)))
    for a in permanent:
        undo = app.registry.words(a.connector, a.action).undo_description
        why = f" ({undo})" if undo else ""
        rows.append((a.target, f"{a.action} {a.subject}", a.incident_id, _when(a.updated_at, now), "", "",
                     f"permanent: cannot be undone{why}"))
    if rows:
        print(table(rows, ("TARGET", "ACTION", "INCIDENT", "SINCE", "LAST VERIFIED", "DEAD-MAN TIMER", "TTL"),
                    width=width))
        _say("LAST VERIFIED: read back from the target by the run itself (run), by `agent status --verify` "
             "(verify: reads every target now) or by the daemon; TTL: when it is released by itself; times UTC", "dim")
        unproved = [a.target for a in active if (c := checks.get(a.id)) is not None and c.result != "in_effect"]
        if unproved:
            _say(f"\nNot in effect at the last read-back: {', '.join(unproved)} — re-apply with the same command, "
                 "or release what is no longer wanted; `agent status --verify` reads them again", "red")
    if permanent:
        _say(f"\nNot reversible: {IRREVERSIBLE_NOTE}", "yellow")
    if doubtful:  # may be in effect: a change was sent but not verified (agent.lifecycle)
        _say("\nIn doubt — verifying (may be in effect; re-verified on the next run and by the daemon; "
             "release undoes them from their snapshots):", "yellow")
        print(table([(a.target, a.action if a.kind == "apply" else f"undo {a.action}", a.incident_id,
                      _when(a.updated_at, now), "in doubt — verifying", a.error or "") for a in doubtful],
                    ("TARGET", "ACTION", "INCIDENT", "SINCE", "STATE", "WHY"), width=width))
    if unfinished:
        _say("\nUnfinished (interrupted) actions — reconciled on the next run:", "yellow")
        print(table([(a.target, a.action, a.state, a.owner) for a in unfinished],
                    ("TARGET", "ACTION", "STATE", "OWNER"), width=width))
    return exitcodes.DONE


def _live(action: Action) -> list[ActionItem]:
    """The items of an active action that are still in effect (a batch may be partly undone)."""
    return [i for i in action.items if i.undone_at is None and i.changed != 0 and i.state in ("done", "in_doubt")]


def _list(app: App, args: argparse.Namespace) -> int:
    from agent import journal_reads
    with app.store.session() as s:
        incidents = journal_reads.recent_incidents(s)
        data = [{"id": i.id, "title": i.title, "status": i.status, "trigger": i.trigger,
                 "requested_by": i.requested_by, "discovered_at": i.discovered_at.isoformat(),
                 "contained_at": i.contained_at.isoformat() if i.contained_at else None,
                 "actions": len(i.actions)} for i in incidents]
    if args.json:
        emit_json(data)
    elif not data:
        print("No incidents yet.")
    else:
        print(table([(d["id"], state_color(str(d["status"])), d["title"], d["requested_by"], d["actions"])
                     for d in data], ("INCIDENT", "STATUS", "TITLE", "BY", "ACTIONS")))
    return exitcodes.DONE


def _show(app: App, args: argparse.Namespace) -> int:
    from agent.journal_reads import transitions as transitions_of
    from agent.store import Incident
    with app.store.session() as s:
        inc = s.get(Incident, args.id)
        if inc is None:
            raise NotFound(f"incident {args.id!r} not found (see `agent incidents list`)")
        actions = [a.summary() for a in inc.actions]
        transitions: dict[str, list[dict[str, Any]]] = {a["id"]: [] for a in actions}
        for row in transitions_of(s, list(transitions)):  # the same read as status's proof (agent.journal_reads)
            transitions[row.action_id].append({"from": row.from_state, "to": row.to_state,
                                               "at": row.at.isoformat(), "detail": row.detail})
        head = {"id": inc.id, "title": inc.title, "status": inc.status, "trigger": inc.trigger,
                "reason": inc.reason, "requested_by": inc.requested_by,
                "discovered_at": inc.discovered_at.isoformat(),
                "contained_at": inc.contained_at.isoformat() if inc.contained_at else None}
    if args.json:
        emit_json({**head, "actions": [{**a, "transitions": transitions[a["id"]]} for a in actions]})
        return exitcodes.DONE
    print(color(f"{head['id']}  {head['title']}", "bold"))
    print(f"  status: {state_color(str(head['status']))}   trigger: {head['trigger']}   by: {head['requested_by']}")
    print(f"  reason: {head['reason'] or '-'}")
    print(f"  discovered: {head['discovered_at']}   contained: {head['contained_at'] or '-'}")
    for a in actions:
        verb = f"undo {a['action']}" if a["kind"] == "undo" else a["action"]
        print(f"\n  {verb} on {a['target']} ({a['address']}) via {a['connector']}: {state_color(a['state'])}"
              + (f" — {a['error']}" if a["error"] else ""))
        for t in transitions[a["id"]]:
            print(color(f"    {t['at'][:23]}  {t['from'] or '·':>11} → {t['to']:<11} {t['detail']}", "dim"))
    return exitcodes.DONE


def _facts(app: App, args: argparse.Namespace) -> int:
    """Record facts that start or size legal clocks, with their source; the report reads them from the log."""
    from agent.report.facts import facts_record
    from agent.store import Incident
    fields = facts_record(args, recorded_by=app.actor)
    with app.store.session() as s:
        if s.get(Incident, args.id) is None:
            raise NotFound(f"incident {args.id!r} not found (see `agent incidents list`)")
    systems = [app.inventory.host(name) for name in getattr(args, "system", None) or []]  # unknown: NotFound
    record = app.audit.record("incident.facts", incident=args.id, **fields)
    if systems:
        from agent.report.scope import snapshot_scope
        app.audit.record("incident.scope", incident=args.id, cause="facts", recorded_by=app.actor,
                         source=fields["source"], inventory=str(app.inventory.path), **snapshot_scope(systems))
    if args.json:
        emit_json({"incident": args.id, **fields, "seq": record["seq"]})
    else:
        shown = [f"{k} {v}" for k, v in fields["events"].items()]
        shown += [f"{k}={v}" for k in ("clock_start", "total_affected") if fields.get(k) is not None
                  for v in [fields[k]]]
        shown += [f"{k}: {fields[k]}" for k in ("residents", "data_categories", "organisation", "pending")
                  if fields.get(k)]
        print(f"recorded for {args.id} (audit seq {record['seq']}; source: {fields['source']}): " + "; ".join(shown))
    return exitcodes.DONE
