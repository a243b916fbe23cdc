"""Rebuild a one-step plan that applies a journaled action again (drift re-apply, retry after a transient failure).

Why through the planner and not by copying the row: the target is resolved and pinned again and every guard
(protected hosts, accounts, CIDRs; argument validation) is checked against today's inventory, exactly as for a
fresh run. Only the step that is needed runs, never the rest of the original runbook.
"""

from __future__ import annotations

from typing import Any

from agent.plan import Plan, Planner
from agent.runbook import Runbook, Step
from agent.store import Action

__all__ = ["replan"]

_KIND = {"host": "host", "account": "account", "device": "address"}
_RESOLVED = ("account", "accounts", "addresses", "protected")  # filled in by the planner from the subjects


def replan(planner: Planner, row: Action) -> Plan:
    """A plan that applies ``row``'s action to ``row``'s subject again, under ``row``'s runbook name."""
    kind = _KIND.get(row.target_kind, "host")
    args: dict[str, Any] = {k: v for k, v in (row.args or {}).items() if k not in _RESOLVED}
    step = Step(id=row.step, action=row.action, args=args)
    book = Runbook(name=row.runbook, path=planner.settings.runbooks, description=f"re-apply {row.action}",
                   target=kind, steps=(step,), rollback="none")
    subject = row.subject or row.target
    subjects = _subjects(planner, row)  # a batch: every account/address of it, as the user spelled them
    if kind == "account":
        subject = str((row.args or {}).get("account") or subject)
        return planner.build(book, subjects or [subject], {}, directory=row.target)
    if kind == "address":
        addresses = (row.args or {}).get("addresses") or [subject]
        return planner.build(book, subjects or [str(addresses[0])], {}, devices=[row.target])
    return planner.build(book, [row.target], {})


def _subjects(planner: Planner, row: Action) -> list[str]:
    """The journaled items of ``row`` that were not undone, as requested (empty for a row without items)."""
    if planner.store is None:
        return []
    from sqlalchemy import select

    from agent.store import ActionItem
    with planner.store.session() as s:
        items = s.scalars(select(ActionItem).where(ActionItem.action_id == row.id, ActionItem.undone_at.is_(None))
                          .order_by(ActionItem.position))
        return [i.requested for i in items if i.kind in ("account", "address")]
