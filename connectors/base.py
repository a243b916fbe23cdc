"""The connector contract every connector implements, and the helpers they share.

A connector turns one *action* (``isolate``, ``block_ip``, ``disable_account`` ...) on one
:class:`~connectors.types.Target` into: ``snapshot`` (state needed to undo, journaled before anything changes)
→ ``apply`` → ``verify`` (read the effect back from the target) and, later, ``undo`` built from the snapshot.
All four are idempotent: applying to a target where the effect is present reports ``changed=False``.

Example (what the engine does)::

    conn = registry.get(target.connector)            # agent.registry.Registry: entry point agent.connectors
    conn.validate(target, "isolate", args)           # before any connection: raises InvalidInput
    session = conn.open(target, creds, ctx)
    try:
        snap = conn.snapshot(session, "isolate", args)   # journaled before anything changes
        result = conn.apply(session, "isolate", args, snap)
        check = conn.verify(session, "isolate", args)    # check.in_effect must be True
        ...
        conn.undo(session, "isolate", args, snap)        # later: restores exactly what snap recorded
    finally:
        session.close()

What a connector serves is declared, not assumed by the agent: ``inventory_section`` and ``host_os`` on the class,
``active_as`` / ``lifts`` / ``blast`` on each :class:`~connectors.types.ActionSpec` (docs/architecture.md).

``preview`` returns the exact commands/changes that would run, for ``--dry-run``, without connecting.
Errors are :mod:`connectors.errors`; library exceptions never escape a connector.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Protocol, runtime_checkable

from connectors.errors import InvalidInput
from connectors.types import (
    ActionResult,
    ActionSpec,
    ConnectorContext,
    Credentials,
    Snapshot,
    Target,
    Verification,
)

__all__ = ["ActionHooks", "Connector", "ConnectorBase", "Session"]


@runtime_checkable
class Session(Protocol):
    """An open connection to one target. Connectors return their own type; the engine only closes it."""

    def close(self) -> None: ...


@runtime_checkable
class Connector(Protocol):
    """What the engine needs from a connector. ``name`` is the entry-point name (``ssh_linux``)."""

    name: ClassVar[str]
    actions: ClassVar[Mapping[str, ActionSpec]]
    inventory_section: ClassVar[str]  # "hosts" | "devices" | "directories": the inventory entries it acts on
    host_os: ClassVar[tuple[str, ...]]  # hosts: the inventory ``os`` values it serves when no connector is named

    def validate(self, target: Target, action: str, args: Mapping[str, Any]) -> None:
        """Reject bad arguments before any connection is opened (raise ``InvalidInput``)."""

    def preview(self, target: Target, action: str, args: Mapping[str, Any],
                ctx: ConnectorContext) -> list[str]:
        """The exact commands/changes ``apply`` would send, for dry runs. Must not connect."""

    def summarize(self, target: Target, action: str, args: Mapping[str, Any],
                  ctx: ConnectorContext) -> list[str]:
        """One or two lines a person checks in a plan: the effect, what stays reachable, for how long, the undo.

        Built from the same parsed arguments ``preview`` uses (so it cannot describe something else); must not
        connect. ``preview`` stays the exact text, shown with ``--commands``.
        """

    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> Session:
        """Connect and authenticate (host key / certificate checks happen here)."""

    def snapshot(self, session: Session, action: str, args: Mapping[str, Any]) -> Snapshot:
        """Record the state ``undo`` will need. Read-only."""

    def apply(self, session: Session, action: str, args: Mapping[str, Any],
              snapshot: Snapshot) -> ActionResult:
        """Make the change; idempotent (``changed=False`` when already in effect)."""

    def verify(self, session: Session, action: str, args: Mapping[str, Any]) -> Verification:
        """Read the effect back from the target; ``in_effect`` says whether it is present."""

    def undo(self, session: Session, action: str, args: Mapping[str, Any],
             snapshot: Snapshot) -> ActionResult:
        """Restore what ``snapshot`` recorded; idempotent (``changed=False`` when nothing to undo)."""


SnapshotHook = Callable[[Any, Mapping[str, Any]], Snapshot]
ChangeHook = Callable[[Any, Mapping[str, Any], Snapshot], ActionResult]
VerifyHook = Callable[[Any, Mapping[str, Any]], Verification]
PreviewHook = Callable[[Target, Mapping[str, Any], ConnectorContext], list[str]]
ValidateHook = Callable[[Target, Mapping[str, Any]], None]


@dataclass(frozen=True)
class ActionHooks:
    """The methods that carry out one action, by reference: what :class:`ConnectorBase` dispatches to.

    Why a table and not names built at run time: a reader (and an IDE) goes from ``apply`` to
    :meth:`ConnectorBase.hooks` to the method; the conformance suite checks the table against the declared
    ``actions`` (a reversible action needs ``undo``, a changing one ``verify``). ``apply`` is required; a
    missing ``snapshot`` records nothing, a missing ``validate`` accepts every argument, a missing ``preview``,
    ``verify`` or ``undo`` refuses that step for the action.
    """

    apply: ChangeHook
    verify: VerifyHook | None = None
    preview: PreviewHook | None = None
    snapshot: SnapshotHook | None = None
    undo: ChangeHook | None = None
    validate: ValidateHook | None = None


class ConnectorBase:
    """Optional base class: dispatches ``apply``/``verify``/... through the table :meth:`hooks` returns.

    Shared behaviour lives here once (unknown-action errors, context on errors); a connector implements
    ``open``, its per-action methods, and :meth:`hooks`, one explicit :class:`ActionHooks` per declared action
    (napalm's shape: one typed method per capability, reachable from the table by reference).
    """

    name: ClassVar[str] = ""
    actions: ClassVar[Mapping[str, ActionSpec]] = {}
    inventory_section: ClassVar[str] = "hosts"
    host_os: ClassVar[tuple[str, ...]] = ()

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method runs for which step of which action; keys == :attr:`actions`."""
        raise NotImplementedError(f"connector {self.name!r} does not say which methods carry out its actions")

    @cached_property
    def _hooks(self) -> Mapping[str, ActionHooks]:
        return self.hooks()

    def _entry(self, action: str) -> ActionHooks:
        if action not in self.actions:
            known = ", ".join(sorted(self.actions)) or "none"
            raise InvalidInput(f"connector {self.name!r} has no action {action!r} (known: {known})",
                               connector=self.name, action=action)
        entry = self._hooks.get(action)
        if entry is None:
            raise InvalidInput(f"connector {self.name!r} declares action {action!r} but has no hooks for it",
                               connector=self.name, action=action)
        return entry

    def _missing(self, step: str, action: str) -> InvalidInput:
        return InvalidInput(f"connector {self.name!r} cannot {step} action {action!r}", connector=self.name,
                            action=action)

    def check_target(self, target: Target) -> None:
        """Target-level options (the inventory entry) no action could work with: raise ``InvalidInput``.

        ``agent check-config`` calls this for every inventory entry (when a connector defines it), so a transport
        that cannot work shows up before any plan; ``validate`` repeats it per action."""

    def validate(self, target: Target, action: str, args: Mapping[str, Any]) -> None:
        entry = self._entry(action)
        if entry.validate is not None:
            entry.validate(target, args)

    def preview(self, target: Target, action: str, args: Mapping[str, Any],
                ctx: ConnectorContext) -> list[str]:
        entry = self._entry(action)
        if entry.preview is None:
            raise self._missing("preview", action)
        return entry.preview(target, args, ctx)

    def summarize(self, target: Target, action: str, args: Mapping[str, Any],
                  ctx: ConnectorContext) -> list[str]:
        """Default: the action's own description (connectors override per action for concrete effects)."""
        spec = self.actions.get(action)
        return [spec.description] if spec is not None else []

    def snapshot(self, session: Session, action: str, args: Mapping[str, Any]) -> Snapshot:
        entry = self._entry(action)
        return entry.snapshot(session, args) if entry.snapshot is not None else Snapshot()

    def apply(self, session: Session, action: str, args: Mapping[str, Any],
              snapshot: Snapshot) -> ActionResult:
        return self._entry(action).apply(session, args, snapshot)

    def verify(self, session: Session, action: str, args: Mapping[str, Any]) -> Verification:
        entry = self._entry(action)
        if entry.verify is None:
            raise self._missing("verify", action)
        return entry.verify(session, args)

    def undo(self, session: Session, action: str, args: Mapping[str, Any],
             snapshot: Snapshot) -> ActionResult:
        entry = self._entry(action)
        if entry.undo is None:
            raise self._missing("undo", action)
        return entry.undo(session, args, snapshot)

    def already_so(self, action: str, snapshot: Snapshot) -> bool | None:
        """Did ``snapshot`` — read before anything was sent — already show ``action``'s effect? None: cannot tell.

        Why: a run killed between the snapshot and its journaled result is settled by reading the target; when
        the effect is there, the journal must still say truthfully whether the agent changed anything (an
        account that had no privileged membership was not "removed from privileged groups" by it). Unknown is
        taken as changed: undo then restores the snapshot, a no-op if nothing had changed.
        """
        return None
