"""Where one action runs: the connector sessions opened once per (connector, target) and the :class:`Job` that
binds an action to them. Kept apart from :mod:`agent.lifecycle` because opening sessions (resolving credentials,
replacing a session that failed) is its own job, and the lifecycle's rules read better without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.errors import ConfigError
from agent.registry import Registry
from agent.store import Action
from connectors.base import Session
from connectors.errors import AuthError
from connectors.types import ConnectorContext, Snapshot, Target

__all__ = ["Job", "SessionCache", "changed_when_found"]


class SessionCache:
    """Sessions opened once per (connector, target) within one subject's run (or one resolution)."""

    def __init__(self, registry: Registry, ctx: ConnectorContext) -> None:
        self.registry, self.ctx = registry, ctx
        self._open: dict[tuple[str, str], Session] = {}

    def get(self, connector: str, target: Target, entry: Any) -> Session:
        key = (connector, target.name)
        if key not in self._open:
            self._open[key] = self._connect(connector, target, entry)
        return self._open[key]

    def fresh(self, connector: str, target: Target, entry: Any) -> Session:
        """Drop the cached session (it failed) and open a new one."""
        old = self._open.pop((connector, target.name), None)
        if old is not None:
            _close(old)
        return self.get(connector, target, entry)

    def _connect(self, connector: str, target: Target, entry: Any) -> Session:
        creds = entry.credentials
        if creds is None:
            raise AuthError(f"no credentials configured for {target.name} in the inventory")
        try:
            resolved = creds.resolve()
        except ConfigError as exc:
            raise AuthError(f"credentials for {target.name}: {exc.reason}") from None
        session: Session = self.registry.get(connector).open(target, resolved, self.ctx)
        return session

    def close_all(self) -> None:
        for session in self._open.values():
            _close(session)
        self._open.clear()


def _close(session: Session) -> None:
    try:
        session.close()
    except Exception:  # noqa: BLE001, S110 - closing must never mask the real outcome
        pass


@dataclass
class Job:
    """One action being run or resolved: what to call and where."""

    row: Action
    connector: str
    target: Target
    entry: Any
    action: str
    args: dict[str, Any]
    sessions: SessionCache
    attempts: list[int] = field(default_factory=lambda: [0])
    unreadable: bool = False  # a read-back already failed: do not wait for the target a second time

    @property
    def conn(self) -> Any:
        return self.sessions.registry.get(self.connector)


def changed_when_found(job: Job) -> int:
    """An action found in effect whose result was never journaled (a crash, a dropped connection) after it may
    have sent its change: 0 when its journaled snapshot — read before anything was sent — already showed the
    effect (the connector's ``already_so``), else 1 (undo then restores the snapshot: a no-op if nothing had
    changed). One found in effect before anything was sent (intent, snapshotted) did not change it: 0."""
    row = job.row
    if row.changed is not None:
        return row.changed
    if row.kind == "apply" and row.snapshot is not None:
        check = getattr(job.conn, "already_so", None)
        if check is not None and check(row.action, Snapshot(dict(row.snapshot))) is True:
            return 0
    return 1
