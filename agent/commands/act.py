"""Commands that change things: contain, release, run, block-ip, unblock-ip, disable/enable-account, sweep, plan.

All share one flow: validate input → build the plan (guards, previews; nothing touched) → show it → confirm →
reconcile leftovers of crashed runs → open/attach the incident → execute → per-target results → exit code.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from agent import exitcodes
from agent.app import App, new_incident_id
from agent.commands import act_view
from agent.errors import InputError
from agent.output import color, emit_json, err
from agent.validate import duration, iso_time

__all__ = ["run_act"]

_RUNBOOKS = {"contain": None, "release": None, "block-ip": "block-ip", "unblock-ip": "unblock-ip",
             "disable-account": "disable-account", "enable-account": "enable-account"}


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"--param: {pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def run_act(args: argparse.Namespace) -> int:
    ttl: timedelta | None = duration(args.ttl) if getattr(args, "ttl", None) else None
    _discovered(args)  # a typo in --discovered must stop the run before anything is planned
    app = App(config_path=args.config, trust_host_key=getattr(args, "trust_new_host_key", False))
    try:
        if args.command == "release" and getattr(args, "forget", None):
            return _forget(app, args)
        return _run(app, args, ttl)
    finally:
        app.close()


def _forget(app: App, args: argparse.Namespace) -> int:
    """``release --forget TARGET --reason ...``: close a gone target's containments without contacting it."""
    from agent.containments import forget
    from agent.store import Action
    target = args.forget
    if not args.reason.strip():
        raise InputError("release --forget: --reason is required (why the target is gone: reimaged, "
                         "decommissioned, ...); it is recorded in the audit log")
    with app.store.session() as s:
        known = s.scalar(select_count_of(Action, target))
    if not known:
        raise InputError(f"release --forget: the journal has no action on {target!r} (give the inventory name "
                         "the actions were journaled under, as `agent status` shows it)")
    if args.dry_run:
        print(f"Dry run — would close the containments of {target} in the journal (nothing is sent to it)")
        return exitcodes.DONE
    if not args.yes and not act_view.confirm():
        err("not confirmed: nothing was changed (pass --yes to skip the question)")
        return exitcodes.REFUSED
    closed = forget(app, target, args.reason)
    if args.json:
        emit_json({"status": "done", "target": target, "forgotten": closed})
    elif closed:
        print(color(f"Closed {len(closed)} journaled action(s) of {target} without contacting it; "
                    "audited as containment.forgotten with your reason.", "green"))
    else:
        print(color(f"Nothing active on {target}: nothing to forget.", "green"))
    return exitcodes.DONE


def select_count_of(model: Any, target: str) -> Any:
    from sqlalchemy import func, select
    return select(func.count()).select_from(model).where(model.target == target)


def _run(app: App, args: argparse.Namespace, ttl: timedelta | None) -> int:
    selected: list[str] = []
    by_rule = getattr(args, "release_rule", None)
    if args.command in ("contain", "release") and not getattr(args, "release_incident", None) and not by_rule:
        selected = _select_hosts(app, args)  # bad names stop here, before any reconcile touches a host
    if (args.command == "release" and not getattr(args, "dry_run", False) and not by_rule
            and (selected or getattr(args, "release_incident", None))):
        from agent.in_flight import refuse_while_in_flight
        busy = refuse_while_in_flight(app.store, targets=selected or None,
                                      incident=getattr(args, "release_incident", None))
        if busy is not None:
            return busy
    # Validate everything first (planning touches nothing); only then finish what a crashed run left on the
    # targets this command is about, and plan again on top of it (issue 14 finding 5).
    plan = _build_plan(app, args, selected)
    cmd = args.command
    # `sweep` is the catch-all maintenance run: it settles every interrupted or in-doubt action, on any target
    targets = None if cmd == "sweep" else {pa.target.name for pa in plan.actions} | set(selected)
    if cmd != "plan" and not getattr(args, "dry_run", False) and _reconcile(app, args, targets):
        plan = _build_plan(app, args, selected)
    dry = cmd == "plan" or getattr(args, "dry_run", False)
    if not getattr(args, "offline", False) and (dry or cmd != "sweep"):
        from agent.previews import exact_previews
        # read-only look at the targets: preview == what would be sent; a real run pins those lines, and the
        # connector refuses an item whose device changed before apply (docs/architecture.md, decision 1, step 4)
        exact_previews(app.planner(), plan, pin=not dry)
    if args.json and dry:
        emit_json({"dry_run": True, "plan": plan.to_dict()})
        return exitcodes.DONE
    if not args.json and not _events_to_stdout(args):
        workers = app.settings.workers
        act_view.print_plan(plan, dry, commands=getattr(args, "commands", False),
                            routed=frozenset(workers.sites) if workers is not None else frozenset())
    if dry:
        return exitcodes.DONE
    if not plan.actions:
        if args.json:
            emit_json({"status": "done", "changed": False, "notes": plan.notes, "outcomes": []})
        elif _events_to_stdout(args):
            print(json.dumps({"event": "result", "status": "done", "changed": False, "notes": plan.notes}))
        else:
            print(color("Nothing to do.", "green"))
        return exitcodes.DONE
    hosts = _host_count(plan)
    if hosts > app.settings.confirm_count_above and not act_view.count_confirmed(args, hosts):
        return exitcodes.REFUSED
    if hosts <= app.settings.confirm_count_above and not args.yes and not act_view.confirm():
        err("not confirmed: nothing was changed (pass --yes to skip the question)")
        return exitcodes.REFUSED
    return _execute(app, args, plan, ttl)


def _rule_actions(app: App, planner: Any, rule: str, since_text: str | None) -> tuple[list[Any], list[str]]:
    """Active actions of every incident an alert rule opened since ``since_text`` (oldest incident first)."""
    from sqlalchemy import select

    from agent.intake.tables import IntakeIncident, create_tables
    from agent.store import utcnow
    if not since_text:
        raise InputError("release --by-rule: --since TIME is required (ISO 8601 time, or a duration ago: 2h)")
    try:
        since = utcnow() - duration(since_text)
    except InputError:
        from agent.intake.model import MalformedAlert, event_time
        try:
            parsed = event_time(since_text, where="--since")
        except MalformedAlert as exc:
            raise InputError(f"{exc} (or a duration such as 2h)") from None
        if parsed is None:
            raise InputError(f"--since: {since_text!r} is not a time") from None
        since = parsed
    create_tables(app.store.engine)
    with app.store.session() as s:
        incidents = list(s.scalars(select(IntakeIncident.incident_id).where(
            IntakeIncident.rule == rule, IntakeIncident.opened_at >= since).order_by(IntakeIncident.opened_at)))
    rows = [r for incident in incidents for r in planner.active_actions(None, incident=incident)]
    return rows, incidents


def _selection(args: argparse.Namespace) -> Any:
    from agent.targets import Selection
    return Selection(hosts=getattr(args, "host", None) or (), tags=getattr(args, "tag", None) or (),
                     sites=getattr(args, "site", None) or (), cidrs=getattr(args, "cidr", None) or (),
                     files=getattr(args, "from_file", None) or ())


def _select_hosts(app: App, args: argparse.Namespace) -> list[str]:
    """Resolve --host/--tag/--site/--cidr/--from-file to inventory names before anything is planned."""
    from agent.targets import TargetSelector
    return TargetSelector(app.inventory).resolve(_selection(args))


def _host_count(plan: Any) -> int:
    return len({pa.target.name for pa in plan.actions if pa.target.kind == "host" and pa.spec.mutating})


def _build_plan(app: App, args: argparse.Namespace, selected: list[str]) -> Any:
    """The command's plan: every input checked, guards applied, previews built; nothing is touched."""
    from agent.runbook import find_runbook
    planner = app.planner()
    planner.offline = bool(getattr(args, "offline", False))  # no resolve step at all, DNS names included
    planner.dry_run = args.command == "plan" or bool(getattr(args, "dry_run", False))
    cmd = args.command
    devices = getattr(args, "on", None)
    directory = getattr(args, "directory", None)
    params = _params(getattr(args, "param", []) or [])
    if cmd == "release" and getattr(args, "release_incident", None) and not _selection(args).empty():
        raise InputError("release: give either --incident-all or hosts (--host/--tag/--site/--cidr/--from-file), "
                         "not both")
    by_rule = getattr(args, "release_rule", None)
    if cmd == "release" and by_rule:
        rows, incidents = _rule_actions(app, planner, by_rule, getattr(args, "release_since", None))
        plan = planner.build_undo(rows, "release-by-rule")
        plan.notes.append(f"rule {by_rule}: {len(incidents)} incident(s) opened since then"
                          + (f" ({', '.join(incidents[:10])}{', ...' if len(incidents) > 10 else ''})"
                             if incidents else ""))
        if not rows:
            plan.notes.append(f"rule {by_rule}: nothing active to undo")
    elif cmd == "sweep" or (cmd == "release" and getattr(args, "release_incident", None)):
        from agent.store import utcnow
        if cmd == "sweep":
            rows = planner.active_actions(None, expired_before=utcnow())
            plan = planner.build_undo(rows, "ttl-sweep")
        else:
            rows = planner.active_actions(None, incident=args.release_incident)
            plan = planner.build_undo(rows, "release-incident")
        if not rows:
            plan.notes.append("nothing is due" if cmd == "sweep" else
                              f"incident {args.release_incident}: nothing active to undo")
    else:
        if cmd == "contain" or cmd == "release":
            book, subjects = args.runbook, selected
        elif cmd in ("run", "plan"):
            book, subjects = args.runbook, args.targets
        elif cmd in ("block-ip", "unblock-ip"):
            book, subjects = _RUNBOOKS[cmd], args.addresses
            if cmd == "block-ip" and args.allow_private:
                params["allow_private"] = True
            if cmd == "block-ip" and getattr(args, "allow_broad", False):
                params["allow_broad"] = True
            if cmd == "block-ip" and getattr(args, "inbound_only", False):
                params["outbound"] = False
        else:
            book, subjects = _RUNBOOKS[cmd], list(args.users)
            if cmd == "disable-account":
                params["with_groups"] = args.with_groups
                params["reset_password"] = args.reset_password
        runbook = find_runbook(app.settings.runbooks, str(book))
        if runbook.require_reason and not getattr(args, "reason", ""):
            raise InputError(f"runbook {runbook.name} requires --reason")
        plan = planner.build(runbook, subjects, params, devices=devices, directory=directory)
        if cmd == "enable-account":
            plan.notes.extend(_resets_not_undone(app, subjects))
    return plan


def _execute(app: App, args: argparse.Namespace, plan: Any, ttl: timedelta | None) -> int:
    from agent.engine import Interrupted
    from agent.progress import EventStream, ProgressBoard

    quiet = args.json or _events_to_stdout(args)
    per_target: dict[str, int] = {}
    for pa in plan.actions:
        per_target[pa.target.name] = per_target.get(pa.target.name, 0) + 1
    board = ProgressBoard(per_target) if not quiet and sys.stdout.isatty() else None
    finished: list[Any] = []
    notes_shown: set[str] = set()

    def progress(kind: str, obj: Any) -> None:
        if quiet or kind != "end":
            return
        if board is not None:
            finished.append(obj)  # printed under the board once it stops redrawing
        else:
            act_view.print_outcome(obj, notes_shown)

    engine = app.engine(on_event=progress)
    events_file = _open_events(args)
    stream = EventStream(events_file) if events_file is not None else None
    if stream is not None:
        engine.journal.observers.append(stream)
        stream.emit("plan", plan=plan.to_dict())
    if board is not None:
        engine.journal.observers.append(board)
    incident = args.incident or _undo_incident(app, plan) or new_incident_id()
    title = f"{plan.runbook.name} on {', '.join(plan.subjects)}"
    engine.journal.open_incident(incident, title=title, reason=args.reason, requested_by=app.actor,
                                 trigger="cli", discovered_at=_discovered(args))
    if not quiet:
        print(color(f"Incident {incident}", "bold"))
    if board is not None:
        board.start()
    try:
        result = engine.execute(plan, incident, reason=args.reason, ttl=ttl)
    except Interrupted:
        if board is not None:
            board.stop()
        if stream is not None:
            stream.emit("interrupted", incident=incident)
        err(f"interrupted: the journal is consistent.\n  Unfinished actions of {incident} will be reconciled "
            "on the next run (`agent status` lists them).")
        return exitcodes.INTERRUPTED
    finally:
        if board is not None:
            board.stop()
    if len(per_target) > 3:
        act_view.print_outcome_table(finished)
    else:
        for obj in finished:
            act_view.print_outcome(obj, notes_shown)
    _close_lifted(app, engine, plan, result)
    status = result.status
    if status == "done" and any(s.get("outcome") == "not_supported" for s in plan.skipped):
        status = "partial"  # e.g. an IPv6 block that an IPv4-only device could not take: said in the notes
    if stream is not None:
        stream.emit("result", **{**result.to_dict(), "status": status})
        if events_file is not None and events_file is not sys.stdout:
            events_file.close()
    if args.json:
        emit_json({**result.to_dict(), "status": status, "notes": plan.notes, "skipped": plan.skipped})
    elif not quiet:
        act_view.print_summary(result, plan, args, ttl, status)
    return {"done": exitcodes.DONE, "partial": exitcodes.PARTIAL,
            "refused": exitcodes.REFUSED}.get(status, exitcodes.FAILED)


def _events_to_stdout(args: argparse.Namespace) -> bool:
    return getattr(args, "events", None) == "-"


def _open_events(args: argparse.Namespace) -> Any:
    """``--events -``: NDJSON on stdout instead of the human output; ``--events FILE``: NDJSON into FILE."""
    target = getattr(args, "events", None)
    if not target:
        return None
    if target == "-":
        return sys.stdout
    try:
        return open(target, "a", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--events {target}: cannot open ({exc.strerror})") from None


def _resets_not_undone(app: App, subjects: list[str]) -> list[str]:
    """enable-account restores what can be restored; a password reset cannot be, and the user must hear it."""
    from sqlalchemy import select

    from agent.store import Action
    with app.store.session() as s:
        rows = list(s.scalars(select(Action).where(
            Action.kind == "apply", Action.state == "done", Action.changed == 1, Action.reversible == 0,
            Action.subject.in_(subjects)).order_by(Action.seq)))
    return [f"{row.subject}: the password reset of {row.updated_at:%Y-%m-%d %H:%M}Z (incident {row.incident_id}) "
            f"is NOT undone — {row.action} cannot be reversed; the account comes back with a random password "
            "nobody knows: an administrator must set a new one (e.g. Set-ADAccountPassword / samba-tool user "
            "setpassword) before the user can log on" for row in rows]


def _discovered(args: argparse.Namespace) -> Any:
    value = getattr(args, "discovered", None)
    return iso_time(value, field="discovered") if value else None


def _close_lifted(app: App, engine: Any, plan: Any, result: Any) -> None:
    """Items a lifting action just lifted on that target are no longer active (status, TTL sweep): e.g. the
    addresses an unblock removed close the block actions that added them (matched by canonical identity, a
    normalised CIDR, not by spelling). Which action lifts which, each connector declares (``ActionSpec.lifts``)."""
    from agent.batching import active_items
    done = {o.action_id: o.target for o in result.outcomes if o.state == "done"}
    for pa in plan.actions:
        if pa.action_id not in done or pa.undo_of or not pa.spec.lifts:
            continue
        keys = [i.canonical for i in pa.items]
        for row, _items in active_items(app.store, target=pa.target.name, action=pa.spec.lifts,
                                        keys=keys).values():
            engine.journal.mark_undone(row.id, pa.action_id)


def _reconcile(app: App, args: argparse.Namespace, targets: set[str] | None) -> bool:
    """Finish interrupted actions and settle those in doubt on ``targets`` only (others wait for a command about
    them); True if any."""
    from agent.reconcile import reconcile, unfinished
    engine = app.engine()
    rows = unfinished(engine, targets)
    quiet = args.json or _events_to_stdout(args)
    if rows and not quiet:
        print(color("finishing what an interrupted run left first: " + ", ".join(
            f"{r.action} on {r.target} ({r.state})" for r in rows), "yellow"), flush=True)
    for rec in reconcile(engine, targets=targets):
        if not quiet:
            why = "in doubt" if rec.from_state == "in_doubt" else f"left {rec.from_state} by an interrupted run"
            print(color(f"reconciled {rec.action} on {rec.target} ({why}): {rec.outcome} — {rec.detail}", "yellow"))
    return bool(rows)


def _undo_incident(app: App, plan: Any) -> str | None:
    """A release belongs to the incident it undoes (one timeline for counsel), when there is exactly one."""
    ids = [pa.undo_of for pa in plan.actions]
    if not ids or None in ids:
        return None
    from agent.store import Action
    with app.store.session() as s:
        incidents = {row.incident_id for i in ids if (row := s.get(Action, i)) is not None}
    return incidents.pop() if len(incidents) == 1 else None
