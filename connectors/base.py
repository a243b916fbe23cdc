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

from collections.abc import Mapping
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

__all__ = ["Connector", "ConnectorBase", "Session"]


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


class ConnectorBase:
    """Optional base class: dispatches ``apply``/``verify``/... to ``_apply_<action>`` style hooks.

    Shared behaviour lives here once (unknown-action errors, context on errors); a connector implements only
    ``open`` and the per-action hooks it supports, e.g. ``_snapshot_isolate``, ``_apply_isolate``,
    ``_verify_isolate``, ``_undo_isolate``, ``_preview_isolate``, ``_validate_isolate``.
    """

    name: ClassVar[str] = ""
    actions: ClassVar[Mapping[str, ActionSpec]] = {}
    inventory_section: ClassVar[str] = "hosts"
    host_os: ClassVar[tuple[str, ...]] = ()

    def _hook(self, kind: str, action: str) -> Any:
        if action not in self.actions:
            known = ", ".join(sorted(self.actions)) or "none"
            raise InvalidInput(f"connector {self.name!r} has no action {action!r} (known: {known})",
                               connector=self.name, action=action)
        fn = getattr(self, f"_{kind}_{action}", None)
        if fn is None:
            raise InvalidInput(f"connector {self.name!r} cannot {kind} action {action!r}",
                               connector=self.name, action=action)
        return fn

    def check_target(self, target: Target) -> None:
        """Target-level options (the inventory entry) no action could work with: raise ``InvalidInput``.

        ``agent check-config`` calls this for every inventory entry (when a connector defines it), so a transport
        that cannot work shows up before any plan; ``validate`` repeats it per action."""

    def validate(self, target: Target, action: str, args: Mapping[str, Any]) -> None:
        hook = getattr(self, f"_validate_{action}", None)
        self._hook("apply", action)  # raises for unknown actions
        if hook is not None:
            hook(target, args)

    def preview(self, target: Target, action: str, args: Mapping[str, Any],
                ctx: ConnectorContext) -> list[str]:
        result: list[str] = self._hook("preview", action)(target, args, ctx)
        return result

    def summarize(self, target: Target, action: str, args: Mapping[str, Any],
                  ctx: ConnectorContext) -> list[str]:
        """Default: the action's own description (connectors override per action for concrete effects)."""
        spec = self.actions.get(action)
        return [spec.description] if spec is not None else []

    def snapshot(self, session: Session, action: str, args: Mapping[str, Any]) -> Snapshot:
        hook = getattr(self, f"_snapshot_{action}", None)
        self._hook("apply", action)
        return hook(session, args) if hook is not None else Snapshot()

    def apply(self, session: Session, action: str, args: Mapping[str, Any],
              snapshot: Snapshot) -> ActionResult:
        result: ActionResult = self._hook("apply", action)(session, args, snapshot)
        return result

    def verify(self, session: Session, action: str, args: Mapping[str, Any]) -> Verification:
        result: Verification = self._hook("verify", action)(session, args)
        return result

    def undo(self, session: Session, action: str, args: Mapping[str, Any],
             snapshot: Snapshot) -> ActionResult:
        result: ActionResult = self._hook("undo", action)(session, args, snapshot)
        return result
