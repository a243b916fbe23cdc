"""One exception tree for every connector, so the engine knows what to retry.

    ConnectorError                 base; carries target / connector / action; ``transient`` says "retry may help"
    ├── Unreachable  (transient)   connection refused, no route, DNS, socket reset before anything was sent
    │   └── Timeout  (transient)   no answer in time; the outcome of a change may be unknown -> read state first
    ├── AuthError                  bad credentials, insufficient rights to log in
    ├── HostKeyError               unknown or changed SSH host key (pinning refused it)
    ├── TLSError                   certificate not trusted / wrong name / TLS required but not offered
    ├── Busy     (transient)       the target is held by someone else (configuration lock, other admin's pending
    │                              edits); nothing was changed — retry later or ask the named holder
    ├── Rejected                   the target refused the command (syntax error, permission denied, commit failure)
    ├── VerifyFailed               the change was applied but reading the state back did not show it
    └── InvalidInput               a value that must never reach a target (injection, bad address); raised before
                                   any connection is opened

Connectors translate library exceptions (paramiko, pywinrm, ldap3, netmiko) into these at their boundary,
most specific first, with ``raise X(...) from exc``. Messages never contain secrets.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AuthError",
    "Busy",
    "ConnectorError",
    "HostKeyError",
    "InvalidInput",
    "Rejected",
    "TLSError",
    "Timeout",
    "Unreachable",
    "VerifyFailed",
]


class ConnectorError(Exception):
    """Base of all connector failures. ``transient`` tells the engine whether a retry may succeed."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        target: str | None = None,
        connector: str | None = None,
        action: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.target = target
        self.connector = connector
        self.action = action
        self.detail = dict(detail or {})

    @property
    def kind(self) -> str:
        """Short machine name of the error class, e.g. ``host_key`` (used in journal and JSON output)."""
        return _KINDS.get(type(self).__name__, type(self).__name__)

    def with_context(self, *, target: str | None = None, connector: str | None = None,
                     action: str | None = None) -> ConnectorError:
        """Fill in missing context (the engine knows the target; deep helpers often don't)."""
        self.target = self.target or target
        self.connector = self.connector or connector
        self.action = self.action or action
        return self

    def __str__(self) -> str:
        where = "/".join(x for x in (self.target, self.action) if x)
        return f"{where}: {self.message}" if where else self.message


class Unreachable(ConnectorError):
    """The target could not be reached (refused, no route, reset). Nothing was changed."""

    transient = True


class Timeout(Unreachable):
    """No answer in time. If a change was in flight its outcome is unknown: read state before retrying."""

    transient = True


class AuthError(ConnectorError):
    """Credentials rejected or not allowed; retrying with the same credentials cannot help."""


class HostKeyError(ConnectorError):
    """The SSH host key is unknown or differs from the pinned one; refused unless the operator trusts it."""


class TLSError(ConnectorError):
    """Certificate validation failed (untrusted CA, wrong name) or the server would not speak TLS."""


class Busy(ConnectorError):
    """Someone else holds the target (a configuration lock, another administrator's uncommitted edits we must
    neither commit nor discard). Nothing was changed; the message names the holder; a later retry may work."""

    transient = True


class Rejected(ConnectorError):
    """The target refused or failed the command (syntax, permission, commit failure)."""


class VerifyFailed(ConnectorError):
    """The state read back from the target does not show the expected effect."""


class InvalidInput(ConnectorError):
    """A value that must never reach a target; raised before any connection is opened."""


_KINDS = {
    "ConnectorError": "error",
    "Unreachable": "unreachable",
    "Timeout": "timeout",
    "AuthError": "auth",
    "HostKeyError": "host_key",
    "TLSError": "tls",
    "Busy": "busy",
    "Rejected": "rejected",
    "VerifyFailed": "verify_failed",
    "InvalidInput": "invalid_input",
}
