"""Translate netmiko/paramiko/socket failures into the connector error tree, most specific first.

Why inspect ``__context__``: netmiko wraps almost everything in ``NetmikoTimeoutException`` — an unknown or
changed host key (paramiko ``SSHException``/``BadHostKeyException``), a refused TCP connection (``socket.error``)
and a real timeout all arrive as the same class, raised inside an ``except`` block. The original exception is
kept in ``__context__``, so the chain is walked to tell them apart. Messages never include credentials: netmiko's
texts carry host and port only, and we keep just their first line.
"""

from __future__ import annotations

import socket
from typing import Any

from connectors.errors import AuthError, ConnectorError, HostKeyError, Rejected, Timeout, Unreachable

__all__ = ["is_connection_loss", "map_exception"]

_HOSTKEY_HINTS = ("not found in known_hosts", "host key", "does not match")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 8:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)[:200]


def is_connection_loss(exc: BaseException) -> bool:
    """The SSH channel died (EOF, reset, closed socket) — the outcome of an in-flight change is unknown."""
    import paramiko  # cheap once netmiko is loaded

    return isinstance(exc, (EOFError, ConnectionError, socket.error, paramiko.SSHException)) or (
        "Socket is closed" in str(exc))


def map_exception(exc: BaseException, *, target: str, detail: dict[str, Any] | None = None) -> ConnectorError:
    """Return the connector error for ``exc`` (callers ``raise map_exception(e, ...) from e``)."""
    if isinstance(exc, ConnectorError):
        return exc
    import paramiko
    from netmiko.exceptions import NetmikoAuthenticationException, NetmikoTimeoutException, ReadTimeout

    detail = dict(detail or {})
    chain = _chain(exc)
    for item in chain:
        if isinstance(item, paramiko.BadHostKeyException):
            return HostKeyError(f"SSH host key of {target} differs from the pinned key", target=target,
                                detail=detail)
    for item in chain:
        text = str(item).lower()
        if isinstance(item, paramiko.SSHException) and any(h in text for h in _HOSTKEY_HINTS):
            return HostKeyError(f"SSH host key of {target} is not pinned in known_hosts (refused)",
                                target=target, detail=detail)
    if isinstance(exc, NetmikoAuthenticationException) or any(
            isinstance(i, paramiko.AuthenticationException) for i in chain):
        return AuthError(f"authentication to {target} failed", target=target, detail=detail)
    if isinstance(exc, ReadTimeout):
        return Timeout(f"{target} did not answer in time: {_first_line(exc)}", target=target, detail=detail)
    for item in chain:
        if isinstance(item, (socket.timeout, TimeoutError)):
            return Timeout(f"{target}: connection timed out", target=target, detail=detail)
    for item in chain:
        if isinstance(item, (ConnectionError, socket.gaierror)) or (
                isinstance(item, OSError) and not isinstance(item, paramiko.SSHException)
                and item.errno is not None):
            return Unreachable(f"{target} unreachable: {_first_line(item)}", target=target, detail=detail)
    if isinstance(exc, NetmikoTimeoutException):
        return Timeout(f"{target}: {_first_line(exc)}", target=target, detail=detail)
    if is_connection_loss(exc):
        return Unreachable(f"connection to {target} lost: {_first_line(exc)}", target=target, detail=detail)
    if isinstance(exc, ValueError):  # netmiko: prompt not found, could not enter/leave config mode ...
        return Rejected(f"{target} did not behave as the driver expects: {_first_line(exc)}", target=target,
                        detail=detail)
    return ConnectorError(f"{target}: unexpected {type(exc).__name__}: {_first_line(exc)}", target=target,
                          detail=detail)
