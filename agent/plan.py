"""Planning: turn (runbook, target names, parameters) into a list of concrete connector actions, or refuse.

Everything here happens before any connection is opened: names are validated and resolved to pinned addresses,
protected assets and runbook guards are checked, connector arguments are validated by the connector itself, and
the exact commands are previewed for dry runs. A refusal names the reason and touches nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from agent.config import Settings
from agent.errors import GuardRefused, InputError
from agent.inventory import HostEntry, Inventory
from agent.registry import Registry
from agent.runbook import Runbook, Step
from agent.batching import active_items, irreversible_done, items_for, merge_batches, undo_actions
from agent.items import PlannedItem, account_key, address_key, host_key
from agent.plan_targets import resolve_targets
from agent.store import Action, ActionItem, Store
from connectors.errors import ConnectorError
from connectors.types import ActionSpec, ConnectorContext, Target

__all__ = ["Plan", "PlannedAction", "Planner", "connector_context"]

_Found = dict[str, tuple[Action, list[ActionItem]]]  # active_items(): journaled action id -> (action, its items)


class Unsupported(InputError):
    """A target that cannot carry the request out at all (an IPv6 block on an IPv4-only device). With other
    targets that can, the plan goes ahead without it and the run is ``partial``; alone, it is refused."""


@dataclass
class PlannedAction:
    """One connector action on one target (or the undo of a journaled action)."""

    subject: str  # the value the user named: host name, account, address
    step: Step
    entry: HostEntry
    target: Target
    action: str
    args: dict[str, Any]
    spec: ActionSpec
    undo_of: str | None = None  # journaled action id this undoes
    snapshot: dict[str, Any] | None = None
    preview: list[str] = field(default_factory=list)  # the exact text that will be sent (--commands)
    summary: list[str] = field(default_factory=list)  # the effect in a line or two, for people (the default plan)
    items: list[PlannedItem] = field(default_factory=list)  # the subjects it covers (several: a batch)
    action_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # the journal row's id, known at planning

    @property
    def batched(self) -> bool:
        return len(self.items) > 1

    @property
    def connector(self) -> str:
        return self.target.connector

    def describe(self) -> str:
        verb = f"undo {self.action}" if self.undo_of else self.action
        return f"{self.step.id}: {verb} on {self.target.name} ({self.target.address}) via {self.connector}"


@dataclass
class Plan:
    runbook: Runbook
    params: dict[str, Any]
    subjects: list[str]
    actions: list[PlannedAction]
    notes: list[str] = field(default_factory=list)  # e.g. "victim is not isolated: nothing to release"
    #: steps left out because their target was refused and the step says ``on_refused: skip``
    skipped: list[dict[str, str]] = field(default_factory=list)

    def by_subject(self) -> dict[str, list[PlannedAction]]:
        out: dict[str, list[PlannedAction]] = {s: [] for s in self.subjects}
        for pa in self.actions:
            out.setdefault(pa.subject, []).append(pa)
        return out

    def phases(self) -> list[list[PlannedAction]]:
        """Groups of actions run one after the other; inside one, subjects run in parallel, in step order.

        Without a batched action that is the whole plan (today's order: each subject's steps in turn). With
        one, steps before it run first for every subject, then the batch (one action per device/directory),
        then the steps after it — the runbook's order holds for every subject.
        """
        if not any(pa.batched for pa in self.actions):
            return [list(self.actions)] if self.actions else []
        order = {step.id: i for i, step in enumerate(self.runbook.steps)}
        batched_steps = {pa.step.id for pa in self.actions if pa.batched}
        out: list[list[PlannedAction]] = []
        current: list[PlannedAction] = []
        for step_id in sorted({pa.step.id for pa in self.actions}, key=lambda x: order.get(x, len(order))):
            mine = [pa for pa in self.actions if pa.step.id == step_id]
            if step_id in batched_steps:
                if current:
                    out.append(current)
                out.append(mine)
                current = []
            else:
                current.extend(mine)
        if current:
            out.append(current)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"runbook": self.runbook.name, "params": self.params, "subjects": self.subjects,
                "notes": self.notes, "skipped": self.skipped,
                "actions": [{"action_id": a.action_id, "subject": a.subject, "step": a.step.id, "target": a.target.name,
                             "address": a.target.address, "connector": a.connector, "action": a.action,
                             "undo_of": a.undo_of, "args": _public_args(a.args), "reversible": a.spec.reversible,
                             "summary": a.summary, "preview": a.preview,
                             **({"items": [{"requested": i.requested, "canonical": i.canonical}
                                           for i in a.items]} if a.batched else {})} for a in self.actions]}


def _public_args(args: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k != "protected"}


def connector_context(settings: Settings, inventory: Inventory, *, trust_host_key: bool = False) -> ConnectorContext:
    return ConnectorContext(
        management_addresses=inventory.management,
        known_hosts=str(settings.known_hosts) if settings.known_hosts else None,
        trust_unknown_host_key=trust_host_key,
        connect_timeout=settings.connect_timeout,
        command_timeout=settings.command_timeout,
        confirm_timeout=settings.confirm_timeout,
    )


class Planner:
    def __init__(self, settings: Settings, inventory: Inventory, registry: Registry, store: Store | None,
                 ctx: ConnectorContext) -> None:
        self.settings, self.inventory, self.registry, self.store, self.ctx = (
            settings, inventory, registry, store, ctx)
        self.offline = False  # ``--dry-run --offline``: nothing may be asked of the network, DNS included
        self.dry_run = False  # a plan only shown: a site read nobody took is a note, not a refusal (identify.py)

    def build(self, runbook: Runbook, subjects: Sequence[str], params: Mapping[str, Any] | None = None,
              *, devices: Sequence[str] | None = None, directory: str | None = None) -> Plan:
        """Resolve every subject, check guards, validate arguments. Raises before anything is touched."""
        if not subjects:
            raise InputError(f"runbook {runbook.name}: no target given")
        values = runbook.bind(dict(params or {}))
        plan = Plan(runbook=runbook, params=values, subjects=list(subjects), actions=[])
        undos: dict[tuple[str, str], _UndoRequest] = {}
        for subject in subjects:
            for step in runbook.steps:
                if step.when and not values.get(step.when):
                    continue
                kind = runbook.target
                value: Any = subject
                if step.target:
                    kind = runbook.parameters[step.target].kind or kind
                    value = values.get(step.target)
                    if value in (None, "", []):
                        plan.notes.append(f"{step.id}: skipped, no {step.target} given")
                        continue
                if step.via == "user_hosts":
                    kind = "user_hosts"
                try:
                    resolved = resolve_targets(self.inventory, kind, str(value), runbook, devices, directory,
                                               plan.notes)
                    applies: list[PlannedAction] = []
                    undo_args: list[tuple[HostEntry, str, dict[str, Any]]] = []
                    unsupported: list[Unsupported] = []
                    for entry, address, extra in resolved:
                        args = {**runbook.step_args(step, values), **extra}
                        if step.undo:
                            undo_args.append((entry, address, args))
                            continue
                        try:
                            pa = self._plan_apply(subject, step, entry, address, args)
                        except Unsupported as exc:  # block where possible, report where not (partial)
                            unsupported.append(exc)
                            plan.skipped.append({"step": step.id, "subject": subject, "target": entry.name,
                                                 "reason": str(exc), "outcome": "not_supported"})
                            plan.notes.append(f"{step.id}: {subject} NOT done on {entry.name}: {exc}")
                            continue
                        pa.items = items_for(kind, subject, args, entry.name)
                        applies.append(pa)
                    if unsupported and not applies and not undo_args:
                        raise unsupported[0]  # nowhere to do it: the whole request is refused
                except (GuardRefused, InputError) as exc:
                    if step.on_refused != "skip":
                        raise
                    plan.skipped.append({"step": step.id, "subject": subject, "target": str(value),
                                         "reason": str(exc)})
                    plan.notes.append(f"{step.id}: skipped (on_refused: skip): {exc}")
                    continue
                if not resolved and kind == "user_hosts":
                    plan.notes.append(f"{step.id}: no inventory host lists {value} under users; "
                                      "end its sessions by hand where it is logged in")
                for entry, address, args in undo_args:
                    req = undos.setdefault((step.id, entry.name), _UndoRequest(step, entry, address))
                    req.add(subject, kind, args)
                plan.actions.extend(applies)
        if self.store is not None:  # a planner that journals nothing needs no identities (tests, previews)
            from agent.identify import identify_accounts
            identify_accounts(self, plan, undos.values())
        found = self._undo_found(list(undos.values()))
        for req in undos.values():
            plan.actions.extend(self._plan_undo(req, plan, found))
        merge_batches(self, plan)
        return plan

    # -- actions -------------------------------------------------------------------------------------------
    def _spec(self, connector: str, action: str, step: Step) -> ActionSpec:
        conn = self.registry.get(connector)
        if action not in conn.actions:
            raise InputError(f"step {step.id}: connector {connector} has no action {action!r} "
                             f"(known: {', '.join(sorted(conn.actions))})")
        return conn.actions[action]

    def _plan_apply(self, subject: str, step: Step, entry: HostEntry, address: str,
                    args: dict[str, Any]) -> PlannedAction:
        target = entry.target(address)
        spec = self._spec(target.connector, step.action, step)
        conn = self.registry.get(target.connector)
        if step.action in getattr(conn, "pins_allow_names", ()) and any(
                r.names and r.resolve == "plan" for r in target.allow):
            args = {**args, "allow_pins": self._pins(entry, target.address)}
        try:
            conn.validate(target, step.action, args)
            preview = conn.preview(target, step.action, args, self.ctx)
            summary = conn.summarize(target, step.action, args, self.ctx)
        except ConnectorError as exc:
            if exc.detail.get("reason") == "protected_account":  # a guard (exit 3), not a typo (exit 2)
                raise GuardRefused(f"refused: {target.name}: {exc.message}; nothing was touched") from None
            if exc.detail.get("reason") == "family":  # the target cannot do it at all (IPv6 on IPv4-only)
                raise Unsupported(f"{target.name}: {step.action}: {exc.message}") from None
            raise InputError(f"{target.name}: {step.action}: {exc.message}") from None
        return PlannedAction(subject=subject, step=step, entry=entry, target=target, action=step.action,
                             args=args, spec=spec, preview=preview, summary=summary)

    def _pins(self, entry: HostEntry, address: str) -> dict[str, list[str]]:
        """The read-only resolve step for the allow-list's ``resolve: plan`` DNS names (docs/architecture.md,
        decision 1): by a worker of the host's site when it has one (its resolver, next to the host), else here.
        Journaled with the intent as ``allow_pins``, so the plan shows and the connector sends those addresses."""
        if self.offline:
            names = sorted({n for r in entry.allow if r.resolve == "plan" for n in r.names})
            raise InputError(f"{entry.name}: allow-list name(s) {', '.join(names)} are resolved before the plan "
                             "is shown (resolve: plan), which --offline does not do; run the dry run without "
                             "--offline, or list their addresses under to:")
        cfg = self.settings.workers
        if cfg is not None and cfg.routes(entry.site) and self.store is not None:
            from agent.workers.reads import pins_from_site
            return pins_from_site(self.settings, self.store, entry.name, str(entry.site), address)
        from agent.reach import resolve_names
        return resolve_names(entry.allow)

    def _undo_found(self, reqs: list[_UndoRequest]) -> dict[tuple[str, str], _Found]:
        """The journaled items of many undo requests that name their items by key alone (a release of a fleet:
        one ``host:NAME`` per host), read in one query instead of one per target — 1.3-1.5 ms of CPU per host —
        then split exactly as each request's own query finds them: same target, same action, canonical among
        its keys, in journal order. A request left out (names to match, or sharing its target and action with
        another step) queries on its own in :meth:`_plan_undo`."""
        by_target: dict[tuple[str, str], list[_UndoRequest]] = {}
        for r in reqs:
            if r.keys and not r.names:
                by_target.setdefault((r.entry.name, r.step.action), []).append(r)
        wanted = {key: rs[0] for key, rs in by_target.items() if len(rs) == 1}
        if self.store is None or len(wanted) < 2:
            return {}
        out: dict[tuple[str, str], _Found] = {(r.step.id, r.entry.name): {} for r in wanted.values()}
        for action in sorted({a for _, a in wanted}):
            mine = [r for (_, a), r in wanted.items() if a == action]
            rows = active_items(self.store, action=action, targets=sorted({r.entry.name for r in mine}),
                                keys=sorted({k for r in mine for k in r.keys}))
            for action_id, (row, items) in rows.items():
                req = wanted.get((row.target, row.action))
                if req is None:
                    continue
                matched = [i for i in items if i.canonical in req.keys]
                if matched:
                    out[(req.step.id, row.target)][action_id] = (row, matched)
        return out

    def _plan_undo(self, req: _UndoRequest, plan: Plan,
                   prefetched: dict[tuple[str, str], _Found] | None = None) -> list[PlannedAction]:
        """Undo of the journaled items the subjects name (by canonical identity), one action per journaled
        action: ``enable-account A B C`` after one batched disable is one undo of those three items."""
        target = req.entry.target(req.address)
        self._spec(target.connector, req.step.action, req.step)
        if prefetched is not None and (req.step.id, req.entry.name) in prefetched:
            found = prefetched[(req.step.id, req.entry.name)]
        else:
            found = active_items(self.store, target=req.entry.name, action=req.step.action, keys=req.keys,
                                 names=req.names)
        if target.kind == "account" and req.step.action == "disable_account":
            for row, item in irreversible_done(self.store, target=req.entry.name, keys=req.keys, names=req.names):
                when = row.updated_at.strftime("%Y-%m-%d %H:%M:%SZ")
                plan.notes.append(f"{item.requested}: {row.action} was done {when} (incident {row.incident_id}) and "
                                  "cannot be undone — enabling the account does not bring the old password back; "
                                  "an administrator sets a new one")
        matched = {i.canonical for _, items in found.values() for i in items}
        matched_names = {i.requested.lower() for _, items in found.values() for i in items}
        for subject, key in req.subjects:
            if key not in matched and subject.lower() not in matched_names and target.kind != "host":
                plan.notes.append(f"{subject}: no active {req.step.action} on {req.entry.name} in the journal "
                                  "— nothing to undo")
        if not found:
            if target.kind == "host":
                plan.notes.append(f"{req.entry.name}: no active {req.step.action} in the journal — nothing to undo")
            return []
        label = req.subjects[0][0] if len(req.subjects) == 1 else None
        return undo_actions(self, found, subject=label, step=req.step)

    def build_undo(self, rows: Sequence[Action], name: str) -> Plan:
        """A plan undoing journaled actions newest first (release of an incident, TTL sweep): each action's
        items that are still active (an earlier ``enable-account B`` already restored B alone)."""
        from agent.runbook import Runbook
        step = Step(id="undo", action="undo", undo=True)
        book = Runbook(name=name, path=self.settings.runbooks, description="", target="host", steps=(step,),
                       rollback="none")
        plan = Plan(runbook=book, params={}, subjects=[], actions=[])
        if not rows:  # nothing asked for: an empty id list must not mean "every active item"
            return plan
        found = active_items(self.store, action_ids=[r.id for r in rows])
        for pa in undo_actions(self, found, subject=None):
            if pa.subject not in plan.subjects:
                plan.subjects.append(pa.subject)
            plan.actions.append(pa)
        return plan

    def entry_for(self, row: Action) -> HostEntry:
        """The inventory entry a journaled action acted on, by the kind of target it journaled."""
        if row.target_kind == "device":
            return self.inventory.device(row.target)
        if row.target_kind == "account":
            return self.inventory.directory(row.target)
        return self.inventory.host(row.target)

    def active_actions(self, target: str | None, action: str | None = None, *, subject: str | None = None,
                       incident: str | None = None, expired_before: Any = None) -> list[Action]:
        """Applied, reversible, not yet undone actions (oldest first), filtered as given.

        Actions in doubt count as possibly applied: undoing one reads the real state and restores the journaled
        snapshot (the connectors' undo is a no-op where nothing changed).
        """
        if self.store is None:
            return []
        with self.store.session() as s:
            q = select(Action).where(Action.kind == "apply", Action.undone_at.is_(None), Action.reversible == 1,
                                     ((Action.state == "done") & (Action.changed == 1))
                                     | (Action.state == "in_doubt"))
            if target:
                q = q.where(Action.target == target)
            if action:
                q = q.where(Action.action == action)
            if subject:
                q = q.where(Action.subject == subject)
            if incident:
                q = q.where(Action.incident_id == incident)
            if expired_before is not None:
                q = q.where(Action.expires_at.is_not(None), Action.expires_at <= expired_before)
            return list(s.scalars(q.order_by(Action.seq)))


class _UndoRequest:
    """The subjects an undo step names on one target: matched against journaled items all at once."""

    def __init__(self, step: Step, entry: HostEntry, address: str) -> None:
        self.step, self.entry, self.address = step, entry, address
        self.subjects: list[tuple[str, str]] = []  # (as given, canonical key)
        self.keys: list[str] = []
        self.names: list[str] = []

    def add(self, subject: str, kind: str, args: Mapping[str, Any]) -> None:
        if kind == "host":
            key = host_key(self.entry.name)
        elif kind == "account":
            name = str(args.get("account") or subject)
            key = account_key(name)
            self.names.append(name)
        else:
            key = address_key(str((args.get("addresses") or [subject])[0]))
        self.subjects.append((subject, key))
        self.keys.append(key)

    def identified(self, keys: Mapping[str, str]) -> None:
        """The directory's ids for the names (``guid:...``): journaled items are matched by them too."""
        self.subjects = [(s, keys.get(s, k)) for s, k in self.subjects]
        self.keys.extend(keys[n] for n in self.names if n in keys)
