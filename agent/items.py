"""Per-item journal bookkeeping: which subjects an action covers, and what happened to each of them.

Why here and not in the engine: the engine runs an action (snapshot, apply, verify) whether it covers one host
or two hundred addresses; what a connector's snapshot, result and verification say *per item* differs by
connector. :func:`on_transition` reads those dicts as the journal commits a transition and updates the items in
the same database transaction, so an item's state can never disagree with its action's journaled data.

Item states (``agent.store.ITEM_STATES``): ``intent`` → ``done`` (changed or already so, and verified) |
``failed`` (certainly not changed: not found, refused, the device said no) | ``in_doubt`` (the change may have
reached the target: the action broke after it was sent) | ``skipped``. ``changed`` says whether *this* action
changed the item (1) or found it already so (0): undo restores only the former.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from agent.store import Action, ActionItem, utcnow
from connectors.types import ActionSpec

if TYPE_CHECKING:
    from agent.registry import Registry

__all__ = [
    "PlannedItem",
    "absent_items",
    "account_key",
    "address_key",
    "batch_key",
    "guid_key",
    "host_key",
    "item_rows",
    "item_value",
    "on_transition",
    "slice_for_undo",
]

_OK_APPLY = {"disabled", "already_disabled", "added", "already_blocked", "removed", "not_blocked", "changed",
             "unchanged", "restored", "already_restored", "left_disabled", "already_absent", "kept"}
_UNCHANGED = {"already_disabled", "already_blocked", "not_blocked", "unchanged", "already_restored",
              "left_disabled", "already_absent", "kept"}


# -- canonical identity ---------------------------------------------------------------------------------------
def address_key(value: str) -> str:
    """``net:<network/prefix>``: ``203.0.113.7``, ``203.0.113.7/32`` and ``203.0.113.7/32 `` are one subject."""
    try:
        return "net:" + str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        return "net:" + value.strip()


def account_key(name: str) -> str:
    """An account the directory has not resolved yet: its name, case-folded (AD compares names without case)."""
    return "name:" + name.strip().casefold()


def guid_key(guid: str) -> str:
    """The directory's stable id: survives renames, and every spelling of the name resolves to it."""
    return "guid:" + guid.strip().strip("{}").lower()


def host_key(name: str) -> str:
    return "host:" + name


@dataclass(frozen=True)
class PlannedItem:
    """One subject of a planned action: the user's spelling, its canonical key and the connector's value."""

    kind: str  # host | account | address
    canonical: str
    requested: str
    value: str = ""  # the connector argument for it (normalised address text, account name)
    aliases: tuple[str, ...] = field(default=())  # other canonical keys it is known by (name: beside guid:)
    snapshot: dict[str, Any] | None = None  # undo: the item's snapshot in the action being undone


def item_rows(items: Sequence[PlannedItem]) -> list[ActionItem]:
    return [ActionItem(position=i, kind=it.kind, canonical=it.canonical, requested=it.requested,
                       snapshot=it.snapshot, state="intent") for i, it in enumerate(items)]


# -- undo of some items of a journaled action -----------------------------------------------------------------
def slice_for_undo(row: Action, items: Sequence[ActionItem]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(args, snapshot) that make the connector undo exactly ``items`` of ``row`` (all of them: unchanged)."""
    args, snap = dict(row.args or {}), dict(row.snapshot) if row.snapshot else None
    key = batch_key(row)
    if key is None:
        return args, snap
    everything = {i.position for i in row.items}
    chosen = {i.position for i in items}
    if chosen == everything:
        return args, snap
    every = [str(v) for v in args[key]]
    values = [v for pos, v in enumerate(args[key]) if pos in chosen]
    args[key] = values
    if snap is not None:
        for name, entries in list(snap.items()):
            if not isinstance(entries, list):
                continue
            if name == key and len(entries) == len(every):  # per-item entries in item order (AD's accounts)
                snap[name] = [e for pos, e in enumerate(entries) if pos in chosen]
            elif entries and all(isinstance(e, str) for e in entries) and \
                    {address_key(e) for e in entries} <= {address_key(v) for v in every}:
                wanted = {address_key(str(v)) for v in values}  # a subset of the items (was_blocked)
                snap[name] = [e for e in entries if address_key(e) in wanted]
    return args, snap


def batch_key(row: Action) -> str | None:
    """The list argument of a journaled action that holds one value per item (its connector declared it as
    ``ActionSpec.batch`` when the planner folded the subjects), or None for a one-subject action."""
    for name, value in (row.args or {}).items():
        if isinstance(value, list) and value and len(value) == len(row.items):
            return str(name)
    return None


# -- journal hook ---------------------------------------------------------------------------------------------
def touches_items(row: Action, to_state: str, changes: Mapping[str, Any]) -> bool:
    """Can this transition change any of ``row``'s items? Not ``-> applying``, nor a host's snapshot (a ruleset
    says nothing per item): then :func:`on_transition` reads nothing, and the journal writes it without the ORM's
    unit of work (agent.journal: the hot transitions of a fan-out)."""
    snapshot_items = changes.get("snapshot") is not None and row.kind == "apply" and _snapshot_names_items(
        row, changes["snapshot"])
    return bool(snapshot_items or changes.get("result") is not None
                or to_state in ("done", "failed", "in_doubt", "skipped"))


def on_transition(s: Session, row: Action, from_state: str, to_state: str, changes: Mapping[str, Any]
                  ) -> list[dict[str, Any]]:
    """Update ``row``'s items for this transition (in the journal's session); returns them when they changed."""
    if not touches_items(row, to_state, changes):
        return []  # nothing below would touch an item (e.g. -> applying, a host's snapshot): spare the query
    snapshot_items = changes.get("snapshot") is not None and row.kind == "apply" and _snapshot_names_items(
        row, changes["snapshot"])
    items = list(s.scalars(select(ActionItem).where(ActionItem.action_id == row.id).order_by(ActionItem.position)))
    if not items:
        return []
    # ``row.items`` is the same rows in the same order (the relationship orders by position): mark it loaded,
    # so batch_key and _value do not query them again for every transition.
    set_committed_value(row, "items", items)
    now = utcnow()
    touched = False
    if snapshot_items:
        touched |= _from_snapshot(row, items, changes["snapshot"])
    if "result" in changes and changes["result"] is not None:
        touched |= _from_result(row, items, changes["result"])
    if to_state == "done":
        _from_verification(row, items, changes.get("verification") or {})
        touched = True
    elif to_state in ("failed", "in_doubt"):
        for item in items:
            if item.state != "intent":
                continue
            if len(items) == 1:
                item.state = to_state
            elif to_state == "in_doubt" or from_state in ("applying", "verifying") or item.outcome in _OK_APPLY:
                item.state = "in_doubt"  # the batch broke after it was sent: this item may have been changed
            else:
                item.state = "failed"
            item.error = item.error or str(changes.get("error") or "")[:2000] or None
        touched = True
    elif to_state == "skipped":
        for item in items:
            if item.state == "intent":
                item.state = "skipped"
        touched = True
    if not touched:
        return []
    for item in items:
        item.updated_at = now
    return [{"requested": i.requested, "canonical": i.canonical, "state": i.state, "outcome": i.outcome,
             **({"error": i.error} if i.error else {})} for i in items]


def _snapshot_names_items(row: Action, snap: Mapping[str, Any]) -> bool:
    """Could :func:`_from_snapshot` learn anything about the items from ``snap``? Only a batch (a list argument,
    one value per item) or a directory identity (``account``) can; a host's snapshot (a ruleset) cannot, and
    then the items need not be read for it."""
    return isinstance(snap.get("account"), Mapping) or any(
        isinstance(v, list) and v for v in (row.args or {}).values())


def _by_requested(items: Sequence[ActionItem], entries: Iterable[Mapping[str, Any]]
                  ) -> list[tuple[ActionItem, Mapping[str, Any]]]:
    """Pair connector entries with items: by position when the spellings agree, else by the requested name."""
    entries = list(entries)
    if len(entries) == len(items) and all(str(e.get("requested")) in (i.requested, _value(i))
                                          for i, e in zip(items, entries, strict=True)):
        return list(zip(items, entries, strict=True))
    out = []
    for entry in entries:
        name = str(entry.get("requested"))
        match = next((i for i in items if name in (i.requested, _value(i))), None)
        if match is not None:
            out.append((match, entry))
    return out


def _value(item: ActionItem) -> str:
    """The connector value of an item: the args entry at its position."""
    parent = item.parent
    return item_value(parent, item) if parent is not None else item.requested


def item_value(row: Action, item: ActionItem) -> str:
    """The connector value of ``item`` of ``row``: the batch argument's entry at its position."""
    key = batch_key(row)
    values = (row.args or {}).get(key) if key else None
    if isinstance(values, list) and item.position < len(values):
        return str(values[item.position])
    return item.requested


def _spec(row: Action) -> ActionSpec | None:
    """What the action's connector declares about it (None for a connector that is not installed)."""
    return _registry().spec(row.connector, row.action)


@cache
def _registry() -> Registry:
    from agent.registry import Registry
    return Registry()


def absent_items(row: Action, observed: Mapping[str, Any]) -> set[str]:
    """Canonical keys of the subjects a read-back names as not in effect, from the key the connector declares
    (``ActionSpec.items_absent``); entries are values or mappings with ``requested``."""
    spec = _spec(row)
    raw = observed.get(spec.items_absent) if spec is not None and spec.items_absent else None
    if not isinstance(raw, list):
        return set()
    return {address_key(str(e.get("requested")) if isinstance(e, Mapping) else str(e)) for e in raw}


def _from_snapshot(row: Action, items: Sequence[ActionItem], snap: Mapping[str, Any]) -> bool:
    key = batch_key(row)
    listed = snap.get(key) if key else None
    entries: list[Mapping[str, Any]] | None = None
    if isinstance(listed, list) and listed and all(isinstance(e, Mapping) for e in listed):
        entries = listed  # one entry per item (a directory's accounts)
    elif isinstance(snap.get("account"), Mapping):  # one subject with its directory identity
        entries = [{"requested": items[0].requested, "status": "ok", "account": snap["account"]}]
    if entries is not None:
        for item, entry in _by_requested(items, entries):
            identity = entry.get("account") or {}
            if identity.get("objectGUID"):
                item.canonical = guid_key(str(identity["objectGUID"]))
            if entries is listed:
                item.snapshot = dict(entry)
            if entry.get("status", "ok") != "ok":
                item.state, item.outcome, item.changed = "failed", str(entry["status"]), 0
                item.error = str(entry.get("error") or entry["status"])
        return True
    spec = _spec(row)
    if key is not None and spec is not None and spec.items_before:
        before = {address_key(str(a)) for a in snap.get(spec.items_before, [])}
        for item in items:
            item.snapshot = {spec.items_before: address_key(_value(item)) in before}
        return True
    return False


_OUTCOME_LISTS = ("added", "already_blocked", "removed", "not_blocked", "already_absent", "kept")


def _from_result(row: Action, items: Sequence[ActionItem], result: Mapping[str, Any]) -> bool:
    details = result.get("details") or {}
    key = batch_key(row)
    listed = details.get(key) if key else None
    if isinstance(listed, list) and listed and all(isinstance(e, Mapping) for e in listed):
        for item, entry in _by_requested(items, listed):
            outcome = str(entry.get("outcome", ""))
            item.outcome = outcome
            if outcome in _OK_APPLY:
                item.changed = _changed(item, outcome not in _UNCHANGED)
            else:
                item.state, item.changed = "failed", 0
                item.error = str(entry.get("error") or outcome.replace("_", " "))
        return True
    spec = _spec(row)
    if key is not None and spec is not None and spec.items_before:  # the result lists the values per outcome
        lists = {k: {address_key(str(a)) for a in v} for k, v in details.items() if isinstance(v, list)
                 and k in _OUTCOME_LISTS}
        for item in items:
            value = address_key(_value(item))
            outcome = next((k for k, v in lists.items() if value in v), "")
            if outcome:
                item.outcome = outcome
                item.changed = _changed(item, outcome not in _UNCHANGED)
            elif row.kind == "undo":
                item.outcome, item.changed = "kept", 0
        return True
    changed = result.get("changed")
    for item in items:
        item.outcome = "changed" if changed else "unchanged"
        item.changed = _changed(item, bool(changed))
    return True


def _changed(item: ActionItem, now: bool) -> int:
    """1 once this action changed the item: an apply again from the action's own snapshot (a resolution after a
    crash, a drift re-apply) that finds the change already there ("already disabled") must not make undo skip it."""
    return 1 if now or item.changed == 1 else 0


def _from_verification(row: Action, items: Sequence[ActionItem], ver: Mapping[str, Any]) -> None:
    """The action reached ``done``: settle each item still open from what was read back.

    Apply: an item is done unless the read-back names it as not in effect (``ActionSpec.items_absent``: an
    enabled account, a missing address). Undo of an action whose items were in effect before or not
    (``items_before``): done when the read-back names the item's effect absent again, or when this action never
    changed it. Other undos: the connector's per-item result decides (AD's restore is a compare-and-swap the DC
    acknowledged; its verify names at most a few enabled accounts, so it cannot confirm each of a hundred).
    """
    absent = absent_items(row, ver.get("observed") or {})
    spec = _spec(row)
    for item in items:
        if item.state not in ("intent", "in_doubt"):
            continue
        gone = address_key(_value(item)) in absent or address_key(item.requested) in absent
        if row.kind == "apply":
            in_effect = not gone
        elif spec is not None and spec.items_before and spec.items_absent:
            in_effect = item.changed == 0 or gone
        else:
            in_effect = len(items) == 1 or item.outcome in _OK_APPLY
        item.verification = {"in_effect": in_effect, "summary": str(ver.get("summary", ""))[:500]}
        item.state = "done" if in_effect else "failed"
        if not in_effect:
            item.error = item.error or ("applied but not in effect when read back" if row.kind == "apply"
                                        else "undo sent but the change is still in effect when read back")
        if item.changed is None:  # no per-item result journaled (a crash): the item's own snapshot may tell
            item.changed = 0 if _was_so(row, item) else int(bool(row.changed))


def _was_so(row: Action, item: ActionItem) -> bool:
    """The item's snapshot (taken before anything was sent) shows the change already there."""
    snap = item.snapshot or {}
    if row.kind != "apply":
        return False
    if row.action == "disable_account" and "userAccountControl" in snap:
        return bool(int(snap["userAccountControl"]) & 2)  # ACCOUNTDISABLE
    return row.action == "block_ip" and snap.get("already_blocked") is True


def undone_items(s: Session, original: Action, undo_row_id: str, when: Any) -> bool:
    """Mark the items of ``original`` that the undo action ``undo_row_id`` restored; True when none is left.

    An item the undo did not restore (it failed, or was never part of the undo) stays active, so ``status``
    still lists it and a later ``release`` still tries it.
    """
    mine = list(s.scalars(select(ActionItem).where(ActionItem.action_id == original.id)))
    if not mine:
        return True
    undo_items = list(s.scalars(select(ActionItem).where(ActionItem.action_id == undo_row_id)))
    restored = {i.canonical for i in undo_items if i.state == "done"} if undo_items else {i.canonical for i in mine}
    for item in mine:
        if item.undone_at is None and item.canonical in restored:
            item.undone_at, item.undone_by = when, undo_row_id
    return all(i.undone_at is not None or i.changed == 0 or i.state == "failed" for i in mine)
