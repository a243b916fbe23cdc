"""Connector registry: finds connectors through the ``agent.connectors`` entry-point group, loads them lazily.

Why lazy: importing paramiko, pywinrm, ldap3 and netmiko costs ~1 s together; a command that touches one Linux host
should pay for paramiko only. Names from YAML are validated before anything is imported. The registry lives on an
instance (not a class attribute) so tests and the daemon can hold independent ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from agent.errors import ConfigError
from agent.validate import INVENTORY_NAME
from connectors.base import Connector

__all__ = ["Registry"]

GROUP = "agent.connectors"


@cache
def installed_points() -> dict[str, EntryPoint]:
    """The entry points of the group, scanned once per process (≈ 9 ms: every installed distribution is read).

    Installing a connector therefore needs a new process — also for ``agent warm``/``agent daemon``, which
    imported the connectors they serve anyway.
    """
    found: dict[str, EntryPoint] = {}
    clashes: dict[str, list[str]] = {}
    for ep in entry_points(group=GROUP):
        first = found.setdefault(ep.name, ep)
        if first is not ep and first.value != ep.value:
            clashes.setdefault(ep.name, [_origin(first)]).append(_origin(ep))
    if clashes:  # like nornir: two plugins under one name is an installation error, never "the last one wins"
        raise ConfigError("connector names registered more than once in the agent.connectors entry points: "
                          + "; ".join(f"{name!r} by {' and by '.join(where)}" for name, where in clashes.items())
                          + " — uninstall one of them")
    return found


def _origin(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.value} ({dist.name} {dist.version})" if dist is not None else ep.value


class Registry:
    """Name → connector instance, created on first use."""

    def __init__(self, extra: Mapping[str, type[Any]] | None = None) -> None:
        self._points = installed_points()
        self._extra = dict(extra or {})  # in-code connectors (tests' doubles); they replace an installed one
        self._instances: dict[str, Connector] = {}

    def names(self) -> list[str]:
        return sorted(set(self._points) | set(self._extra))

    def get(self, name: str) -> Connector:
        """Return the connector called ``name``; unknown names raise one error listing what exists."""
        if name in self._instances:
            return self._instances[name]
        if not INVENTORY_NAME.fullmatch(name) or name not in self.names():
            raise ConfigError(f"unknown connector {name!r} (installed: {', '.join(self.names()) or 'none'})")
        try:
            cls = self._extra.get(name) or self._points[name].load()
        except ModuleNotFoundError as exc:
            from agent.extras import missing_extra
            raise missing_extra(exc.name, f"connector {name!r}") from None
        instance = cls()
        missing = [m for m in ("validate", "preview", "open", "snapshot", "apply", "verify", "undo")
                   if not callable(getattr(instance, m, None))]
        if missing or not isinstance(getattr(instance, "actions", None), Mapping):
            raise ConfigError(f"connector {name!r} ({cls.__module__}.{cls.__name__}) does not implement the "
                              f"connector interface (missing: {', '.join(missing) or 'actions'})")
        if getattr(instance, "name", name) != name:
            raise ConfigError(f"connector registered as {name!r} calls itself {instance.name!r}")
        self._instances[name] = instance
        return instance  # type: ignore[no-any-return]

    def close(self) -> None:
        """Close connectors that pool connections (e.g. LDAP binds reused across accounts in one run)."""
        for instance in self._instances.values():
            closer = getattr(instance, "close", None)
            if callable(closer):
                with contextlib.suppress(Exception):  # closing must never mask the command's outcome
                    closer()
        self._instances.clear()
