"""Validation of values that arrive from people and alerts: names, addresses, durations.

Every function returns the normalised value or raises :class:`InputError` naming the field and the value, so a
typo never reaches a target and the responder sees exactly what was wrong.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import datetime, timedelta

from agent.errors import InputError

__all__ = ["INVENTORY_NAME", "duration", "inventory_name", "ip_or_cidr", "username"]

INVENTORY_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})")
_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_ASCII_IP = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "...'"


def inventory_name(value: str, *, field: str = "host") -> str:
    """An inventory name: letters, digits, ``.``, ``_``, ``-``; at most 63 characters."""
    if not isinstance(value, str) or not INVENTORY_NAME.fullmatch(value):
        raise InputError(f"{field}: {_shown(value)} is not a valid name "
                         "(letters, digits, '.', '_' and '-', at most 63 characters)")
    return value


def username(value: str, *, field: str = "user") -> str:
    """A directory account: sAMAccountName, UPN, ``DOMAIN\\name``, DN, objectSid or objectGUID.

    Escape, don't forbid: anything Active Directory accepts as a name passes (``o'brien``, ``a(b)c``,
    ``ünïcode``); only what cannot name an account is refused — the grammar is shared with the AD connector
    (:mod:`connectors.account_names`), so the CLI, the daemon and the connector agree.
    """
    from connectors.account_names import parse_account_name
    try:
        parse_account_name(value)
    except ValueError as exc:
        raise InputError(f"{field}: not a valid account name: {exc}") from None
    return value


def ip_or_cidr(value: str, *, field: str = "address") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IPv4/IPv6 address or CIDR written in ASCII (unicode digits and spaces are refused)."""
    if not isinstance(value, str) or not _ASCII_IP.fullmatch(value):
        raise InputError(f"{field}: {_shown(value)} is not an IP address or CIDR")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise InputError(f"{field}: {_shown(value)} is not an IP address or CIDR") from None


def duration(value: str, *, field: str = "ttl") -> timedelta:
    """``90s``, ``15m``, ``4h``, ``2d``, ``1h30m``. Zero and empty are refused."""
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match or not any(match.groups()):
        raise InputError(f"{field}: {_shown(value)} is not a duration (examples: 30m, 4h, 2d, 1h30m)")
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    delta = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if delta.total_seconds() <= 0:
        raise InputError(f"{field}: duration must be positive, got {value!r}")
    if delta > timedelta(days=366):
        raise InputError(f"{field}: {value!r} is longer than a year; use release instead of a TTL")
    return delta


def iso_time(value: str, *, field: str) -> datetime:
    """An ISO-8601 time *with* a zone offset: legal clocks must not depend on the agent host's time zone."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise InputError(f"{field}: {_shown(value)} is not an ISO date/time "
                         "(example: 2026-11-23T08:15-05:00)") from None
    if moment.tzinfo is None:
        raise InputError(f"{field}: {_shown(value)} needs a time zone offset (example: 2026-11-23T08:15-05:00)")
    return moment
