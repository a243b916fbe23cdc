"""Connector registry: finds connectors through the ``agent.connectors`` entry-point group, loads them lazily.

Why lazy: importing paramiko, pywinrm, ldap3 and netmiko costs ~1 s together; a command that touches one Linux host
should pay for paramiko only. Names from YAML are validated before anything is imported. The registry lives on an
instance (not a class attribute) so tests and the daemon can hold independent ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, distributions
from typing import TYPE_CHECKING, Any

from agent.errors import ConfigError
from connectors.capabilities import status_words

if TYPE_CHECKING:  # imported where a connector is loaded: `agent status` reads only the advertised words
    from connectors.base import Connector
    from connectors.types import ActionSpec

__all__ = ["CAPABILITIES_GROUP", "INVENTORY_GROUP", "Registry", "StatusWords", "default_connector", "host_os_names",
           "lifts"]

GROUP = "agent.connectors"
# Which connector serves an inventory section by default ("hosts.linux", "devices", "directories"), advertised by
# the connector's distribution so the inventory can choose one without importing any connector (start-up cost).
# The connector class declares the same (``inventory_section``, ``host_os``); Registry.get checks they agree.
INVENTORY_GROUP = "agent.inventory"
# What `agent status` reads of each connector's actions (how an active containment reads, which action lifts
# which), advertised so status names them without importing any connector (connectors/capabilities.py says why).
CAPABILITIES_GROUP = "agent.capabilities"


@cache
def _scan() -> dict[str, list[EntryPoint]]:
    """The agent's entry-point groups from one pass over the installed distributions (each pass reads every
    distribution's metadata: ≈ 10 ms, paid once per process)."""
    out: dict[str, list[EntryPoint]] = {}
    seen: set[str] = set()
    for dist in distributions():  # as entry_points() does: the first distribution of a name wins
        name = getattr(dist, "_normalized_name", None) or str(dist.metadata["Name"]).lower().replace("-", "_")
        if name in seen:
            continue
        seen.add(name)
        for ep in dist.entry_points:
            if ep.group in (GROUP, INVENTORY_GROUP, CAPABILITIES_GROUP):
                out.setdefault(ep.group, []).append(ep)
    return out


@cache
def installed_points() -> dict[str, EntryPoint]:
    """The entry points of the group, scanned once per process (≈ 9 ms: every installed distribution is read).

    Installing a connector therefore needs a new process — also for ``agent warm``/``agent daemon``, which
    imported the connectors they serve anyway.
    """
    found: dict[str, EntryPoint] = {}
    clashes: dict[str, list[str]] = {}
    for ep in _scan().get(GROUP, []):
        first = found.setdefault(ep.name, ep)
        if first is not ep and first.value != ep.value:
            clashes.setdefault(ep.name, [_origin(first)]).append(_origin(ep))
    if clashes:  # like nornir: two plugins under one name is an installation error, never "the last one wins"
        raise ConfigError("connector names registered more than once in the agent.connectors entry points: "
                          + "; ".join(f"{name!r} by {' and by '.join(where)}" for name, where in clashes.items())
                          + " — uninstall one of them")
    return found


@cache
def advertised_defaults() -> dict[str, str]:
    """``{"hosts.linux": "ssh_linux", "devices": "firewall", ...}``; one error when two connectors claim a key.

    Without advertisements (a distribution that registers only ``agent.connectors``) the classes are loaded and
    their declarations read instead: slower, same answer.
    """
    found: dict[str, list[str]] = {}
    for ep in _scan().get(INVENTORY_GROUP, []):
        if ep.value not in found.setdefault(ep.name, []):
            found[ep.name].append(ep.value)
    if not found:
        for name, ep in installed_points().items():
            try:
                cls = ep.load()
            except ModuleNotFoundError:
                continue  # reported when the connector is used
            section = getattr(cls, "inventory_section", "hosts")
            keys = [f"{section}.{os}" for os in getattr(cls, "host_os", ())] or ([] if section == "hosts" else
                                                                               [section])
            for key in keys:
                found.setdefault(key, []).append(name)
    clashes = {key: names for key, names in found.items() if len(names) > 1}
    if clashes:
        raise ConfigError("more than one connector is the default for "
                          + "; ".join(f"{key} ({', '.join(names)})" for key, names in sorted(clashes.items()))
                          + ": name the connector on each inventory entry, or uninstall one")
    return {key: names[0] for key, names in found.items()}


def default_connector(section: str, os_name: str = "") -> str | None:
    """The connector serving ``section`` entries (hosts: with inventory ``os`` = ``os_name``), or None."""
    return advertised_defaults().get(f"{section}.{os_name}" if os_name else section)


def host_os_names() -> list[str]:
    return sorted(key.split(".", 1)[1] for key in advertised_defaults() if key.startswith("hosts."))


@dataclass(frozen=True)
class StatusWords:
    """What ``agent status`` shows of an action: how it reads while in effect, the action it lifts (then it is
    never "contained" itself), and for an irreversible change its undo description."""

    active_as: str = ""
    lifts: str = ""
    undo_description: str = ""


_WORDS = ("active_as", "lifts", "undo_description")


@cache
def advertised_words(name: str) -> Mapping[str, Mapping[str, str]] | None:
    """The ``agent.capabilities`` advertisement of connector ``name`` (loaded from its light module), or None
    when its distribution advertises none or the advertisement is not a mapping of action → words."""
    eps = [ep for ep in _scan().get(CAPABILITIES_GROUP, []) if ep.name == name]
    if len(eps) != 1:
        return None
    try:
        words = eps[0].load()
    except (ImportError, AttributeError):
        return None
    if not (isinstance(words, Mapping) and all(isinstance(v, Mapping) for v in words.values())):
        return None
    return words


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
        from agent.validate import INVENTORY_NAME

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
        if name not in self._extra:
            _check_advertised(name, instance)
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

    def spec(self, connector: str, action: str) -> ActionSpec | None:
        """What ``connector`` declares about ``action``; None when either is unknown (an uninstalled plugin's
        journaled actions are still listed, just without their capabilities)."""
        try:
            return self.get(connector).actions.get(action)
        except ConfigError:
            return None

    def words(self, connector: str, action: str) -> StatusWords:
        """What ``agent status`` shows of ``connector``'s ``action``: from the distribution's advertisement when
        there is one (no connector imported), else from the loaded class; empty for an unknown connector or
        action (an uninstalled plugin's journaled actions are still listed, just without their words)."""
        if connector in self._points and connector not in self._extra:
            advertised = advertised_words(connector)
            if advertised is not None:
                words = advertised.get(action, {})
                return StatusWords(**{key: str(words[key]) for key in _WORDS if key in words})
        spec = self.spec(connector, action)
        if spec is None:
            return StatusWords()
        return StatusWords(**status_words({action: spec}).get(action, {}))

    def all_specs(self) -> list[tuple[str, ActionSpec]]:
        """Every (connector, action spec) of the connectors that load (the daemon's blast-radius categories)."""
        out = []
        for name in self.names():
            try:
                out += [(name, spec) for spec in self.get(name).actions.values()]
            except ConfigError:
                continue
        return out


def lifts(registry: Any, connector: str, action: str) -> bool:
    """Whether ``action`` *lifts* containment (its connector declares ``ActionSpec.lifts``: unblock lifts
    block). Such actions are journaled like any other but are never "contained" state."""
    spec = registry.spec(connector, action)
    return spec is not None and bool(spec.lifts)


def _check_advertised(name: str, instance: Any) -> None:
    """The distribution's advertisements and the class's own declarations must say the same."""
    advertised = advertised_words(name)
    if advertised is not None:
        declared = status_words(instance.actions)
        if {a: dict(w) for a, w in advertised.items()} != declared:
            raise ConfigError(f"connector {name!r}: its {CAPABILITIES_GROUP} entry point advertises "
                              f"{dict(advertised)!r} but its actions declare {declared!r} — update the "
                              "advertisement (the words `agent status` shows without loading the connector)")
    section = getattr(instance, "inventory_section", "hosts")
    for key, owner in advertised_defaults().items():
        if owner != name:
            continue
        wanted_section, _, os_name = key.partition(".")
        if wanted_section != section or (os_name and os_name not in getattr(instance, "host_os", ())):
            raise ConfigError(f"connector {name!r} is advertised as the default for {key} but declares "
                              f"inventory_section={section!r}, host_os={getattr(instance, 'host_os', ())!r}")
