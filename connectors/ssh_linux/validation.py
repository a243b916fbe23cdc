"""Parse and police every value that ends up in a command on the host, before anything connects.

Why strict parsing instead of quoting alone: a management address becomes part of an nft ruleset, an ``ss``
filter and an iptables rule; a user name becomes an argument of ``id``/``pkill``. Parsing with :mod:`ipaddress`
and ``int`` turns them into values that cannot carry shell or nft syntax at all, and quoting
(:func:`shlex.quote`) is applied on top where they meet a shell. Anything else is refused with
:class:`~connectors.errors.InvalidInput` naming the field and the offending value.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.errors import InvalidInput

if TYPE_CHECKING:
    from connectors.ssh_linux.allowlist import Flow

__all__ = [
    "MIN_PREFIX",
    "IsolateArgs",
    "Network",
    "UserName",
    "parse_bool",
    "parse_confirm_seconds",
    "parse_isolate_args",
    "parse_management",
    "parse_port",
    "parse_user",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Management entries may be networks, but never so wide that "keep the agent reachable" means "keep everyone".
MIN_PREFIX = {4: 16, 6: 48}
_ADDR_CHARS = re.compile(r"[0-9A-Fa-f:./]{2,49}")
_DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,62}")
MAX_CONFIRM = 86400


def _bad(field: str, value: object, why: str) -> InvalidInput:
    return InvalidInput(f"{field}: {value!r} {why}", connector="ssh_linux", detail={"field": field})


def _parse_network(field: str, raw: object) -> Network:
    if not isinstance(raw, str) or not _ADDR_CHARS.fullmatch(raw):
        # Also keeps out IPv6 scope ids ("fe80::1%eth0"), which ipaddress accepts with arbitrary text.
        raise _bad(field, raw, "is not an IP address or network")
    parsed = _network(raw)
    if isinstance(parsed, str):
        raise _bad(field, raw, parsed)
    return parsed


@functools.lru_cache(maxsize=256)
def _network(raw: str) -> Network | str:
    """The network ``raw`` names, or why it cannot be a management address. Remembered (bounded): the same few
    management addresses are parsed for every plan the daemon builds (validate, preview, summary), and
    ``ipaddress`` objects are immutable, so a remembered answer is the fresh one."""
    try:
        net = ipaddress.ip_network(raw, strict=True)
    except ValueError:
        return "is not an IP address or network (host bits must be zero)"
    if net.prefixlen < MIN_PREFIX[net.version]:
        return f"is too wide for a management network (at least /{MIN_PREFIX[net.version]})"
    first = net.network_address
    if first.is_unspecified or first.is_multicast or first.is_loopback:
        return "cannot be a management address (unspecified, multicast or loopback)"
    return net


def parse_management(raw: object, field: str = "management") -> tuple[Network, ...]:
    """Management addresses/networks, deduplicated in order; at least one is required."""
    if isinstance(raw, str) or not isinstance(raw, Iterable):
        raise _bad(field, raw, "must be a list of IP addresses")
    nets: list[Network] = []
    for item in raw:
        net = _parse_network(field, item)
        if net not in nets:
            nets.append(net)
    if not nets:
        raise _bad(field, list(raw), "is empty: isolation would cut the agent off (no management address)")
    if len(nets) > 32:
        raise _bad(field, f"{len(nets)} entries", "is too many (at most 32)")
    return tuple(nets)


def parse_port(raw: object, field: str = "ssh_port") -> int:
    """A TCP port 1..65535 given as an int (or a string of ASCII digits)."""
    if isinstance(raw, bool):
        raise _bad(field, raw, "is not a port number")
    if isinstance(raw, str) and re.fullmatch(r"[0-9]{1,5}", raw):
        raw = int(raw)
    if not isinstance(raw, int) or not 1 <= raw <= 65535:
        raise _bad(field, raw, "is not a port number (1-65535)")
    return raw


def parse_confirm_seconds(raw: object, field: str = "confirm_seconds") -> int:
    """Dead-man delay in seconds: 0 disables the timer, otherwise 5..86400."""
    if isinstance(raw, str) and re.fullmatch(r"[0-9]{1,6}", raw):
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not (raw == 0 or 5 <= raw <= MAX_CONFIRM):
        raise _bad(field, raw, f"must be 0 (no timer) or 5..{MAX_CONFIRM} seconds")
    return raw


def parse_bool(raw: object, field: str) -> bool:
    if isinstance(raw, bool):
        return raw
    raise _bad(field, raw, "must be true or false")


@dataclass(frozen=True)
class IsolateArgs:
    """The isolate action's arguments after parsing (``management`` already resolved against the context)."""

    management: tuple[Network, ...]
    ssh_port: int
    confirm_seconds: int
    cut_sessions: bool
    confirm: bool
    allow: tuple[Flow, ...] = ()  # the target's allow-list (Target.allow), kept open besides management
    survive_reboot: bool = False  # also install a boot unit that re-applies the isolation (:mod:`.persist`)


# allow_pins: the allow-list's DNS names as pinned when the plan was shown (connectors/ssh_linux/allowlist.py)
_ISOLATE_KEYS = {"management", "ssh_port", "confirm_seconds", "cut_sessions", "confirm", "survive_reboot",
                 "allow_pins"}


def parse_isolate_args(args: Mapping[str, Any], default_management: Iterable[str] | None = (),
                       default_confirm: int = 300) -> IsolateArgs:
    """Parse isolate's arguments; ``management`` falls back to the agent's configured addresses.

    ``default_management=None`` (validation before the context is known) leaves an absent ``management``
    unchecked and empty; apply and preview always pass the context's addresses, which must not be empty.
    """
    unknown = sorted(set(args) - _ISOLATE_KEYS)
    if unknown:
        raise _bad("args", unknown, f"are not isolate arguments (known: {', '.join(sorted(_ISOLATE_KEYS))})")
    mgmt: tuple[Network, ...] = ()
    if args.get("management") is not None:
        mgmt = parse_management(args["management"])
    elif default_management is not None:
        mgmt = parse_management(list(default_management), field="management_addresses")
    survive_reboot = parse_bool(args.get("survive_reboot", False), "survive_reboot")
    if survive_reboot and args.get("confirm") is False:
        raise _bad("survive_reboot", True, "needs confirm: true (an unconfirmed isolation is lifted by its dead-man "
                                           "timer, so it is never written for boot)")
    return IsolateArgs(
        management=mgmt,
        ssh_port=parse_port(args.get("ssh_port", 22)),
        confirm_seconds=parse_confirm_seconds(args.get("confirm_seconds", default_confirm)),
        cut_sessions=parse_bool(args.get("cut_sessions", True), "cut_sessions"),
        confirm=parse_bool(args.get("confirm", True), "confirm"),
        survive_reboot=survive_reboot,
    )


@dataclass(frozen=True)
class UserName:
    """A user to act on: ``user`` plus the optional Windows domain of a ``DOMAIN\\user`` spelling."""

    user: str
    domain: str | None = None

    def candidates(self) -> list[str]:
        """Names the host's NSS may know this account by (winbind ``DOMAIN\\user``, sssd ``user@domain``)."""
        if self.domain is None:
            return [self.user]
        return [f"{self.domain}\\{self.user}", f"{self.user}@{self.domain}", self.user]

    def __str__(self) -> str:
        return f"{self.domain}\\{self.user}" if self.domain else self.user


def parse_user(raw: object, field: str = "user") -> UserName:
    """Any name the host's NSS may know (local, winbind ``DOMAIN\\user``, sssd ``user@domain``): ``o'brien``,
    ``a(b)c``, ``ünïcode``, spaces. Escape, don't forbid — the name reaches the host only inside ``shlex.quote`` and
    is resolved there to a UID that every later command uses. Refused: not a string, empty, over 256 characters,
    control characters (a newline would split the script's line-based answer), ``.``/``..``, and a ``DOMAIN\\``
    part that is not a NetBIOS/DNS domain name."""
    if not isinstance(raw, str) or not raw or len(raw) > 256:
        raise _bad(field, raw, "is not a user name (1 to 256 characters)")
    if any(unicodedata.category(ch) == "Cc" for ch in raw):
        raise _bad(field, raw, "is not a user name (control characters such as newline or NUL)")
    domain: str | None = None
    name = raw
    if "\\" in raw:
        domain, _, name = raw.partition("\\")
        if not _DOMAIN_RE.fullmatch(domain):
            raise _bad(field, raw, "has an invalid domain part (letters, digits, '.', '-')")
    if not name or name in {".", ".."}:
        raise _bad(field, raw, "is not a user name")
    return UserName(user=name, domain=domain)
