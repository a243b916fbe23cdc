"""Small typed records that cross the connector boundary (targets, credentials, results).

Everything a connector returns is JSON-serialisable through ``to_dict`` so the engine can journal it verbatim.
Secrets travel only inside :class:`Secret`, whose ``repr``/``str`` never shows the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = [
    "ActionResult",
    "ActionSpec",
    "AllowRule",
    "ConnectorContext",
    "Credentials",
    "Hop",
    "Secret",
    "Snapshot",
    "Target",
    "TargetKind",
    "Verification",
]

TargetKind = Literal["host", "account", "device"]


class Secret:
    """A secret value that refuses to be printed. Call :meth:`reveal` at the last moment, never log it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class Credentials:
    """Resolved credentials for one target. Built from ``env:``/``file:`` references in the inventory."""

    username: str
    password: Secret | None = None
    private_key_path: str | None = None
    private_key_passphrase: Secret | None = None
    extra: Mapping[str, Secret] = field(default_factory=dict)
    hops: tuple[Credentials, ...] = ()  # one per ``Target.jump`` entry, same order (outermost first)


@dataclass(frozen=True)
class Hop:
    """One jump host on the way to a target (OpenSSH ``ProxyJump``), outermost first.

    Why the key is part of the record: a bastion is the one machine every containment of its site passes through,
    so its host key is pinned in the inventory like the target's (the inventory refuses a jump host without one).
    Credentials for the hop arrive as ``Credentials.hops[i]``, never here.
    """

    name: str
    address: str
    port: int
    host_key: str
    username: str


@dataclass(frozen=True)
class AllowRule:
    """A flow isolation keeps open besides the management channel (resolvers, DHCP, EDR/SIEM forwarders).

    ``to`` holds IP addresses or networks. A DNS name written in the inventory becomes addresses in one of two
    ways, chosen per rule by ``resolve``: ``"plan"`` — resolved by the agent (or the site worker) in the read-only
    resolve step before the plan is shown, so ``to`` holds the pinned addresses the plan displays and the
    connector sends; ``"target"`` — resolved on the target when isolating (``names`` keeps the names, ``to`` is
    empty; e.g. a Windows dynamic-keyword address), and the addresses used are recorded in the snapshot.
    ``service`` rules need no address: ``"dns"`` = the resolvers the host itself is configured with (read from
    the host), ``"dhcp"`` = DHCP client traffic (UDP 67/68, DHCPv6 546/547). ``source`` says where the rule was
    declared (``host``, ``site boston``, ``tag dmz``, ``defaults ssh_linux``) so the plan can say why a flow stays.
    """

    source: str
    to: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    service: Literal["dns", "dhcp"] | None = None
    protocol: Literal["tcp", "udp", "any"] = "any"
    ports: tuple[int, ...] = ()
    direction: Literal["out", "in", "both"] = "out"
    resolve: Literal["plan", "target"] = "plan"
    note: str = ""


@dataclass(frozen=True)
class Target:
    """One thing a connector acts on: a host, an account or a network device, already validated.

    ``address`` is the pinned IP address (names are resolved before anything is applied, so isolation can never
    cut the path to a name server it still needs). ``options`` holds connector-specific inventory settings
    (e.g. ``device_type`` for firewalls, ``allow_insecure`` for WinRM).
    """

    name: str
    kind: TargetKind
    address: str
    connector: str
    os: str = ""
    port: int | None = None
    host_key: str | None = None
    tags: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    site: str | None = None  # the site whose worker holds this target's credentials (None: any / the agent itself)
    jump: tuple[Hop, ...] = ()  # ProxyJump chain, outermost first; () = connect directly
    allow: tuple[AllowRule, ...] = ()  # flows isolation keeps open besides management (hosts only)


@dataclass(frozen=True)
class ConnectorContext:
    """Agent-wide facts a connector needs but must not look up itself.

    ``management_addresses`` are the addresses isolation must keep reachable (the agent's own). ``known_hosts``
    is the pin file; ``trust_unknown_host_key`` is set only when the operator explicitly trusts a new key.
    """

    management_addresses: tuple[str, ...] = ()
    known_hosts: str | None = None
    trust_unknown_host_key: bool = False
    connect_timeout: float = 5.0
    command_timeout: float = 30.0
    confirm_timeout: int = 300
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ActionSpec:
    """What an action does, for plans, dry runs and ``agent connectors list``."""

    name: str
    description: str
    target_kind: TargetKind
    reversible: bool = True
    mutating: bool = True
    undo_description: str = ""
    # Capabilities the application reads instead of naming actions (docs/architecture.md, never 6):
    active_as: str = ""  # how its containment reads in `agent status` while in effect ("isolated", "blocked")
    lifts: str = ""  # the containment action this one lifts (unblock_ip lifts block_ip): never "contained" itself
    blast: str = ""  # blast-radius category counted for automatic runs ("hosts", "accounts"; "" = not limited)
    # the list argument that takes several subjects in one call (one session, one commit): the planner folds the
    # subjects of one step on one target into it ("addresses", "accounts"; "" = one subject per action)
    batch: str = ""
    # Per-item journal of a batch action (agent/items.py), read instead of knowing the connector: the snapshot
    # key listing the subjects already in effect before it (their undo leaves them: "already_blocked"), and the
    # verification ``observed`` key listing the subjects whose effect is absent (values, or mappings with
    # "requested": "missing", "enabled" accounts). Per-item entries in the snapshot/result under the ``batch``
    # key ({"requested", "status" | "outcome", "error", "account": identity}) need no declaration.
    items_before: str = ""
    items_absent: str = ""
    # The effect has parts an undo puts back one at a time (memberships in several groups, the accounts of a
    # batch): after an interrupted undo, "no longer in effect" does not say that every part is back — one group
    # re-added already lifts "out of privileged groups". The runner then completes such an undo from the journaled
    # snapshot rather than taking it as done, so the connector's undo must restore only what still differs from
    # the snapshot (a read and nothing sent when everything is back).
    undo_in_parts: bool = False


@dataclass
class Snapshot:
    """State captured before a change: exactly what ``undo`` needs to restore it (journaled before apply)."""

    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass
class ActionResult:
    """Outcome of ``apply``/``undo``. ``changed`` is False for idempotent no-ops ("already isolated")."""

    changed: bool
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Verification:
    """State read back from the target. ``in_effect`` says whether the action's effect is present now."""

    in_effect: bool
    summary: str
    observed: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
