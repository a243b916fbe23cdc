"""Plans with items: several subjects in one connector action, and undo of some items of a journaled action.

Why: ``agent block-ip A B C`` on a firewall is one session and one commit when the connector gets the list in
one call (20 addresses were 20 PAN-OS commits), and ``disable-account`` over 100 accounts is one search and
pipelined modifies. The planner first plans one action per subject as before (every guard and validation runs
per subject, so a refusal still names the subject); :func:`merge_batches` then folds the actions of a batched
step on the same device or directory into one, whose items are the subjects. Undo reads items, not ``args``:
:func:`undo_actions` finds the journaled items a subject names by canonical identity and plans an undo of
exactly those items (``enable-account B`` out of ``disable-account A B C``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from agent.errors import InputError
from agent.items import PlannedItem, account_key, address_key, host_key, slice_for_undo
from agent.store import Action, ActionItem, Store
from connectors.errors import ConnectorError

if TYPE_CHECKING:
    from agent.plan import Plan, PlannedAction, Planner

__all__ = ["active_items", "items_for", "merge_batches", "undo_actions"]

ACTIVE_ITEM_STATES = ("done", "in_doubt")  # possibly applied: undo reads the real state and restores


def items_for(kind: str, subject: str, args: dict[str, Any], target_name: str) -> list[PlannedItem]:
    """The item of a freshly planned (single-subject) action, keyed canonically."""
    if kind == "address" and isinstance(args.get("addresses"), list) and args["addresses"]:
        value = str(args["addresses"][0])
        return [PlannedItem("address", address_key(value), subject, value)]
    if kind == "account" and args.get("account"):
        value = str(args["account"])
        return [PlannedItem("account", account_key(value), subject, value)]
    return [PlannedItem("host", host_key(target_name), subject if kind == "host" else target_name, target_name)]


def merge_batches(planner: Planner, plan: Plan) -> None:
    """Fold the actions of a batched step on one device/directory into one action (kept at the first's place);
    drop a per-subject action that repeats an earlier one on the same subject (``jdoe`` and ``JDOE@lab.test``
    are one account once the directory has said so: its evidence is captured once, its sessions ended once)."""
    _drop_repeats(plan)
    groups: dict[tuple[str, str, str], list[PlannedAction]] = {}
    for pa in plan.actions:
        if pa.undo_of is None and pa.spec.batch:
            groups.setdefault((pa.step.id, pa.target.name, pa.action), []).append(pa)
    replaced: dict[int, PlannedAction | None] = {}
    for parts in groups.values():
        if len(parts) < 2:
            continue
        merged = _merge(planner, plan, parts)
        replaced[id(parts[0])] = merged
        for pa in parts[1:]:
            replaced[id(pa)] = None
    if replaced:
        kept = [replaced.get(id(pa), pa) for pa in plan.actions]
        plan.actions = [pa for pa in kept if pa is not None]


def _drop_repeats(plan: Plan) -> None:
    if len(plan.actions) < 2:  # nothing to repeat (an alert's plan for one host): skip rendering the arguments
        return
    seen: set[tuple[str, ...]] = set()
    kept: list[PlannedAction] = []
    for pa in plan.actions:
        if pa.undo_of is None and not pa.spec.batch:
            if pa.items and all(i.kind == "account" for i in pa.items):
                what = tuple(i.canonical for i in pa.items)
            else:
                what = tuple(sorted(f"{k}={v!r}" for k, v in pa.args.items()))
            key = (pa.step.id, pa.target.name, pa.action, *what)
            if key in seen:
                continue
            seen.add(key)
        kept.append(pa)
    plan.actions = kept


def _merge(planner: Planner, plan: Plan, parts: list[PlannedAction]) -> PlannedAction:
    from agent.plan import PlannedAction
    first = parts[0]
    key = first.spec.batch
    items: list[PlannedItem] = []
    values: list[str] = []
    seen: dict[str, PlannedItem] = {}
    for pa in parts:
        for item in pa.items:
            same = seen.get(item.canonical)
            if same is not None:
                plan.notes.append(f"{item.requested!r} and {same.requested!r} name the same "
                                  f"{item.kind}: {first.step.id} once")
                continue
            seen[item.canonical] = item
            items.append(item)
            values.append(item.value)
    args = {k: v for k, v in first.args.items() if k != key and not (isinstance(v, str) and v in values)}
    args[key] = values
    if len(values) == 1:  # every other subject named the same one: the single form, as planned
        return first
    conn = planner.registry.get(first.connector)
    try:
        conn.validate(first.target, first.action, args)
        preview = conn.preview(first.target, first.action, args, planner.ctx)
        summary = conn.summarize(first.target, first.action, args, planner.ctx)
    except ConnectorError as exc:
        raise InputError(f"{first.target.name}: {first.action}: {exc.message}") from None
    return PlannedAction(subject=_label(items), step=first.step, entry=first.entry, target=first.target,
                         action=first.action, args=args, spec=first.spec, preview=preview, summary=summary,
                         items=items, action_id=str(uuid.uuid4()))


def _label(items: Sequence[PlannedItem]) -> str:
    names = [i.requested for i in items]
    return ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:2])} and {len(names) - 2} more"


# -- undo ---------------------------------------------------------------------------------------------------------
def active_items(store: Store | None, *, target: str | None = None, action: str | None = None,
                 keys: Sequence[str] = (), names: Sequence[str] = (), incident: str | None = None,
                 expired_before: Any = None, action_ids: Sequence[str] = (), targets: Sequence[str] = ()
                 ) -> dict[str, tuple[Action, list[ActionItem]]]:
    """Journaled items that may be in effect and were changed by the agent, grouped by their action (by id).

    "May be in effect": the item is done or in doubt and not undone, its action was applied (done, or in doubt
    — undo reads the real state first), is reversible and mutating. An item the action found already so
    (``changed`` = 0) is not the agent's to undo.
    """
    if store is None:
        return {}
    with store.session() as s:
        q = (select(ActionItem).join(Action, ActionItem.action_id == Action.id)
             .where(Action.kind == "apply", Action.state.in_(("done", "in_doubt")), Action.undone_at.is_(None),
                    Action.reversible == 1, Action.mutating == 1, ActionItem.undone_at.is_(None),
                    ActionItem.state.in_(ACTIVE_ITEM_STATES),
                    (ActionItem.changed == 1) | ActionItem.changed.is_(None))
             .options(selectinload(ActionItem.parent).selectinload(Action.items)))
        if target:
            q = q.where(Action.target == target)
        if action:
            q = q.where(Action.action == action)
        if targets:
            q = q.where(Action.target.in_(list(targets)))
        if keys or names:  # names: accounts journaled by GUID, asked for by a name the directory was not asked
            q = q.where(ActionItem.canonical.in_(list(keys))
                        | ((ActionItem.kind == "account")
                           & func.lower(ActionItem.requested).in_([n.lower() for n in names])))
        if incident:
            q = q.where(Action.incident_id == incident)
        if expired_before is not None:
            q = q.where(Action.expires_at.is_not(None), Action.expires_at <= expired_before)
        if action_ids:
            q = q.where(Action.id.in_(list(action_ids)))
        out: dict[str, tuple[Action, list[ActionItem]]] = {}
        for item in s.scalars(q.order_by(Action.seq, ActionItem.position)):
            out.setdefault(item.action_id, (item.parent, []))[1].append(item)
        return out


def irreversible_done(store: Store | None, *, target: str, keys: Sequence[str], names: Sequence[str]
                      ) -> list[tuple[Action, ActionItem]]:
    """Done, not reversible actions (a password reset) on these subjects: an undo must say it cannot undo them."""
    if store is None or not (keys or names):
        return []
    with store.session() as s:
        q = (select(Action, ActionItem).join(ActionItem, ActionItem.action_id == Action.id)
             .where(Action.kind == "apply", Action.state == "done", Action.reversible == 0, Action.mutating == 1,
                    Action.target == target,
                    ActionItem.canonical.in_(list(keys))
                    | func.lower(ActionItem.requested).in_([n.lower() for n in names]))
             .order_by(Action.seq))
        return [(a, i) for a, i in s.execute(q).tuples()]


def undo_actions(planner: Planner, found: dict[str, tuple[Action, list[ActionItem]]], *, subject: str | None,
                 step: Any = None) -> list[PlannedAction]:
    """One undo action per journaled action, covering exactly ``found``'s items of it (newest action first)."""
    from agent.plan import PlannedAction
    from agent.runbook import Step
    out: list[PlannedAction] = []
    for row, items in sorted(found.values(), key=lambda pair: pair[0].seq, reverse=True):
        entry = planner.entry_for(row)
        target = entry.target(row.address or None)
        the_step = step or Step(id=row.step, action=row.action, undo=True)
        spec = planner._spec(target.connector, row.action, the_step)
        args, snap = slice_for_undo(row, items)
        when = row.updated_at.strftime("%Y-%m-%d %H:%M:%SZ")
        which = "" if len(items) == len(row.items) else \
            f" for {len(items)} of its {len(row.items)} items ({_label_rows(items)})"
        planned = [PlannedItem(i.kind, i.canonical, i.requested, str(i.requested), snapshot=i.snapshot)
                   for i in items]
        out.append(PlannedAction(
            subject=subject or _label(planned), step=the_step, entry=entry, target=target, action=row.action,
            args=args, spec=spec, undo_of=row.id, snapshot=snap, items=planned,
            preview=[(f"undo {row.action} {'in doubt since' if row.state == 'in_doubt' else 'applied'} {when} "
                      f"(action {row.id[:8]}, incident {row.incident_id})"
                      f"{which} from its journaled snapshot")]))
    return out


def _label_rows(items: Sequence[ActionItem]) -> str:
    names = [i.requested for i in items]
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
