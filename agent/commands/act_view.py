"""What the acting commands show and ask: the plan as a person reads it, the confirmations, per-target outcomes
and the closing summary. Kept apart from :mod:`agent.commands.act`, which decides and executes; everything here
only reads the plan and result objects it is given."""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from typing import Any

from agent.output import color, err, state_color

__all__ = ["confirm", "count_confirmed", "print_outcome", "print_outcome_table", "print_plan", "print_summary"]


def count_confirmed(args: argparse.Namespace, hosts: int) -> bool:
    """Many hosts at once: the responder states how many they expect, so a too-wide tag or CIDR is caught.

    With ``--yes`` the number comes from ``--count N``; on a terminal it is typed at the prompt. A mismatch or no
    answer changes nothing.
    """
    expected = getattr(args, "count", None)
    if args.yes:
        if expected == hosts:
            return True
        err(f"this plan changes {hosts} hosts: pass --count {hosts} with --yes to confirm the number "
            f"(got {'no --count' if expected is None else f'--count {expected}'}); nothing was changed")
        return False
    if expected is not None and expected != hosts:
        err(f"--count {expected} does not match the {hosts} hosts in this plan; nothing was changed")
        return False
    if not sys.stdin.isatty():
        err(f"refusing to act on {hosts} hosts without confirmation: standard input is not a terminal; "
            f"pass --yes --count {hosts}")
        return False
    try:
        answer = input(color(f"This changes {hosts} hosts. Type the number of hosts to proceed: ", "bold"))
    except EOFError:
        return False
    if answer.strip() == str(hosts):
        return True
    err(f"not confirmed ({answer.strip()!r} is not {hosts}): nothing was changed")
    return False


def confirm() -> bool:
    if not sys.stdin.isatty():
        err("refusing to act without confirmation: standard input is not a terminal; pass --yes")
        return False
    try:
        answer = input(color("Proceed? [y/N] ", "bold"))
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def print_outcome_table(outcomes: list[Any]) -> None:
    """Many targets: one line per target (its worst state, its last action's summary, cut to the width); what
    went wrong is printed in full by the summary below."""
    import shutil

    width = shutil.get_terminal_size((120, 40)).columns - 1
    order = ["done", "rolled_back", "in_doubt", "failed"]
    by_target: dict[str, list[Any]] = {}
    for o in outcomes:
        by_target.setdefault(o.target, []).append(o)
    for target, rows in sorted(by_target.items()):
        worst = max((o.state for o in rows), key=lambda st: order.index(st) if st in order else 0)
        last = rows[-1]
        text = f"  {target:<14.14} {worst:<9} {', '.join(o.step for o in rows)}: {last.summary}"
        print(text[:width].replace(f" {worst} ", f" {state_color(worst)} ", 1), flush=True)


def print_outcome(obj: Any, notes_shown: set[str] | None = None) -> None:
    """One result line per action, then its batch items that are not done, then its notes. A note already shown
    for an earlier action of the same run (``notes_shown``) is referred to, not repeated: the Kerberos note of
    `disable-account` used to fill the screen twice."""
    state = state_color(obj.state) + " " * max(0, 6 - len(obj.state))  # pad the visible text, not the codes
    print(f"  {obj.target:<14} {obj.step:<10} {state} {obj.summary}", flush=True)
    named = []
    for item in getattr(obj, "items", None) or []:  # a batch: every item that is not done, by name
        if item["state"] != "done":
            text = state_color(item["state"]) + " " * max(0, 6 - len(item["state"]))
            why = item.get("error") or item.get("outcome", "").replace("_", " ")
            print(f"  {'':<14} {'':<10} {text} {item['requested']}: {why}", flush=True)
            named.append(f"{item['requested']}: ")
    for warning in obj.warnings:
        if any(warning.startswith(prefix) for prefix in named):
            continue  # the item's line above already says it
        if notes_shown is not None and warning in notes_shown:
            print(color(f"  {'':<14} {'':<10} note: the same as above", "yellow"), flush=True)
            continue
        if notes_shown is not None:
            notes_shown.add(warning)
        print(color(f"  {'':<14} {'':<10} note: {warning}", "yellow"), flush=True)


def print_plan(plan: Any, dry: bool, *, commands: bool = False, routed: frozenset[str] = frozenset()) -> None:
    """The plan as a person checks it: the effect per step in a line or two, targets grouped when the effect is
    the same (40 hosts read as one block, not 40); ``--commands`` adds the exact text sent to each target.
    ``routed``: the sites whose workers run their targets' actions (``workers.sites``) — said per step, so the
    responder knows which ``agent worker --site`` must be up before saying yes.

    Both come from the same planned actions the engine executes (``summary`` and ``preview``).
    """
    import shutil
    import textwrap

    width = max(60, min(shutil.get_terminal_size((120, 40)).columns, 160))
    head = "Dry run — nothing will be changed" if dry else "Plan"
    subjects = plan.subjects
    named = ", ".join(subjects) if len(subjects) <= 3 else f"{len(subjects)} targets"
    print(color(f"{head}: {plan.runbook.name} on {named or '(none)'}", "bold"))
    for n, (label, flags, summary, group) in enumerate(_groups(plan), 1):
        print(f"  {n}. {label}  [{', '.join(flags)}]")
        prefix = "on: " if len(group) == 1 else f"on {len(group)} targets: "
        for line in _wrap_items(prefix, [f"{pa.target.name} ({pa.target.address})" for pa in group], width - 5):
            print(f"     {line}")
        sites = sorted({str(pa.entry.site) for pa in group if pa.entry.site in routed})
        if sites:
            names = ", ".join(sites)
            print(f"     run by: the workers of site{'s' if len(sites) > 1 else ''} {names} "
                  f"(`agent worker --site {sites[0]}`{' …' if len(sites) > 1 else ''}), not this process")
        for line in summary:
            for sub in textwrap.wrap(line, width=width - 7) or [""]:
                print(color(f"     {sub}", "dim"))
        if commands:
            for pa in group:
                if pa.undo_of:
                    continue
                print(color(f"     exact text for {pa.target.name}:", "dim"))
                for line in pa.preview:
                    for sub in str(line).splitlines():
                        print(color(f"       | {sub}", "dim"))
    if dry and not commands and any(pa.preview for pa in plan.actions if not pa.undo_of):
        print(color("  (--commands shows the exact text sent to each target)", "dim"))
    if plan.runbook.irreversible_note and any(pa.spec.mutating and not pa.spec.reversible and not pa.undo_of
                                              for pa in plan.actions):
        print(color(f"  NOT reversible: {plan.runbook.irreversible_note}", "red"))
    for note in plan.notes:
        print(color(f"  note: {note}", "yellow"))


def _wrap_items(prefix: str, items: list[str], width: int) -> list[str]:
    """Comma-separated items wrapped between items only (a host name and its address never split)."""
    lines, line = [], prefix
    for i, item in enumerate(items):
        piece = item + ("," if i < len(items) - 1 else "")
        if line.strip() and len(line) + len(piece) + 1 > width and line != prefix:
            lines.append(line.rstrip())
            line = "    "
        line += piece + " "
    lines.append(line.rstrip())
    return lines


def _groups(plan: Any) -> list[tuple[str, list[str], list[str], list[Any]]]:
    """Consecutive-or-not actions with the same step, action, flags and effect, in plan order."""
    out: dict[tuple[Any, ...], tuple[str, list[str], list[str], list[Any]]] = {}
    for pa in plan.actions:
        flags = _flags(pa)
        if pa.undo_of:
            label = f"{pa.step.id}: undo {pa.action}"
            incidents = sorted({line.rsplit("incident ", 1)[-1].split(")")[0] for line in pa.preview
                                if "incident " in line})
            summary = [f"restore the state journaled before {pa.action} (incident {', '.join(incidents)})"
                       if incidents else "restore the journaled snapshot"]
            key: tuple[Any, ...] = ("undo", pa.step.id, pa.action, tuple(flags), tuple(summary))
        else:
            label = f"{pa.step.id}: {pa.action} via {pa.connector}"
            summary = list(pa.summary)
            if pa.spec.mutating and not pa.spec.reversible and pa.spec.undo_description:
                summary.append(f"undo: {pa.spec.undo_description}")
            key = ("apply", pa.step.id, pa.action, pa.connector, tuple(flags), tuple(summary))
        if key not in out:
            out[key] = (label, flags, summary, [])
        out[key][3].append(pa)
    return list(out.values())


def _flags(pa: Any) -> list[str]:
    if not pa.spec.mutating:
        return ["read-only"]
    if pa.undo_of:
        return ["undo"]
    if pa.spec.reversible:
        return ["reversible"]
    return [color("NOT reversible", "red")]


def print_summary(result: Any, plan: Any, args: argparse.Namespace, ttl: timedelta | None,
                   status: str | None = None) -> None:
    status = status or result.status
    print()
    print(f"Result: {state_color(status)} — incident {result.incident}")
    for skipped in plan.skipped:
        if skipped.get("outcome") == "not_supported":
            print(color(f"  {skipped['target']}: NOT done — {skipped['reason']}", "red"))
    if status != "done":
        for o in result.outcomes:
            if o.state == "failed" and not o.items:
                print(color(f"  {o.target}: {o.error}", "red"))
            if o.state == "in_doubt" and not o.items:
                print(color(f"  {o.target}: in doubt — verifying ({o.error}); it may be in effect: re-verified on "
                            "the next run and by the daemon, and `release`/undo treats it as applied", "yellow"))
            bad = [i for i in o.items if i["state"] != "done" or o.state != "done"]
            for item in bad:
                why = item.get("error") or o.error or item.get("outcome", "").replace("_", " ")
                print(color(f"  {o.target}: {item['requested']}: {item['state'].replace('_', ' ')}: {why}",
                            "red"))
            if bad:
                done = len(o.items) - len(bad)
                print(color(f"  {o.target}: {o.step}: {done} of {len(o.items)} verified done", "yellow"))
    if ttl and status in ("done", "partial"):
        print(f"Automatic release after {args.ttl} (run `agent sweep` or the daemon).")
    if args.command == "contain" and status in ("done", "partial"):
        hosts = ",".join(s for s in plan.subjects if s not in result.failed_subjects())
        if hosts:
            print(f"Undo with: agent release --host {hosts}")
    print("Audit trail: agent audit verify · agent incidents show " + result.incident)
