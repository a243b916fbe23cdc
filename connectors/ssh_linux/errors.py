"""Translate paramiko and socket failures into the connector error tree, most specific class first.

Why a table: the engine retries only transient errors, so the mapping decides whether a refused key is retried
(it must not be) or a reset connection is (it should). ``tests/unit/test_ssh_linux_errors.py`` walks every
paramiko exception class this connector can meet through :func:`map_exception`. Messages carry the target and the
phase, never credentials (paramiko's texts contain none; we still keep only their first line).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from connectors.errors import AuthError, ConnectorError, HostKeyError, Rejected, Timeout, Unreachable

__all__ = ["UNREACHABLE_ERRNOS", "map_exception", "mapped"]

UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNRESET,
                      errno.ECONNABORTED, errno.EPIPE, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)[:200]


def _caused_by_timeout(exc: BaseException) -> bool:
    cur: BaseException | None = exc
    for _ in range(6):
        if cur is None:
            return False
        if isinstance(cur, (socket.timeout, TimeoutError)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def map_exception(exc: BaseException, *, target: str, phase: str) -> ConnectorError:
    """The connector error for ``exc`` raised while ``phase`` (connect, key exchange, auth, a command) ran."""
    if isinstance(exc, ConnectorError):
        return exc
    import paramiko

    where = f"{target} ({phase})"
    if isinstance(exc, paramiko.BadHostKeyException):
        return HostKeyError(f"{where}: host key does not match the pinned key", target=target)
    if isinstance(exc, paramiko.PasswordRequiredException):
        return AuthError(f"{where}: the private key is encrypted and no passphrase is configured", target=target)
    if isinstance(exc, paramiko.BadAuthenticationType):
        allowed = ", ".join(getattr(exc, "allowed_types", []) or []) or "unknown"
        return AuthError(f"{where}: authentication method not allowed (server allows: {allowed})", target=target)
    if isinstance(exc, paramiko.AuthenticationException):
        return AuthError(f"{where}: authentication failed ({type(exc).__name__})", target=target)
    if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
        return Rejected(f"{where}: no common algorithms with the server: {_first_line(exc)}", target=target)
    if isinstance(exc, paramiko.ChannelException):
        return Unreachable(f"{where}: the server refused a channel ({_first_line(exc)})", target=target)
    if isinstance(exc, (socket.timeout, TimeoutError)) or (
            isinstance(exc, (paramiko.SSHException, EOFError)) and _caused_by_timeout(exc)):
        return Timeout(f"{where}: no answer in time", target=target)
    if isinstance(exc, socket.gaierror):
        return Unreachable(f"{where}: name resolution failed ({_first_line(exc)})", target=target)
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return Unreachable(f"{where}: {_first_line(exc)}", target=target)
    if isinstance(exc, OSError) and not isinstance(exc, paramiko.SSHException):
        reason = exc.strerror or _first_line(exc)
        return Unreachable(f"{where}: {reason}", target=target, detail={"errno": exc.errno})
    if isinstance(exc, EOFError):
        return Unreachable(f"{where}: the server closed the connection", target=target)
    if isinstance(exc, paramiko.SSHException):
        # Negotiation failures (bad banner, connection lost mid-handshake, session not active): retry may help.
        return Unreachable(f"{where}: {_first_line(exc)}", target=target)
    return ConnectorError(f"{where}: unexpected {type(exc).__name__}: {_first_line(exc)}", target=target)


@contextmanager
def mapped(target: str, phase: str) -> Iterator[None]:
    """``with mapped(target, "key exchange"): ...`` re-raises library errors as connector errors."""
    try:
        yield
    except ConnectorError:
        raise
    except Exception as exc:
        raise map_exception(exc, target=target, phase=phase) from exc
