"""Translate ldap3 results and exceptions into :mod:`connectors.errors`, most specific first.

Two sources of failure exist in ldap3 with ``raise_exceptions=False``: a *result* (``conn.result``, an LDAP
result code the server sent) and an *exception* (socket, TLS, timeouts, client-side checks). Both go through here,
so every path out of the connector is one of our classes. Messages carry the server's diagnostic text (AD puts the
reason code there: ``data 533`` = disabled) but never a password: ldap3 never echoes request values in either.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any

from ldap3.core import exceptions as lx

from connectors.errors import (
    AuthError,
    ConnectorError,
    InvalidInput,
    Rejected,
    Timeout,
    TLSError,
    Unreachable,
)

__all__ = ["AD_BIND_REASONS", "from_exception", "from_result"]

#: AD's sub-codes in a failed bind's diagnostic message (``AcceptSecurityContext error, data 533``).
AD_BIND_REASONS: Mapping[str, str] = {
    "525": "user not found",
    "52e": "invalid credentials",
    "530": "not permitted to log on at this time (logonHours)",
    "531": "not permitted to log on from this workstation",
    "532": "password expired",
    "533": "account disabled",
    "701": "account expired",
    "773": "user must change password",
    "775": "account locked out",
}

_TRANSIENT_CODES = {51: "busy", 52: "unavailable"}


def _bind_reason(message: str) -> str:
    for code, reason in AD_BIND_REASONS.items():
        if f"data {code}" in message:
            return f" ({reason}, AD code {code})"
    return ""


def from_result(result: Mapping[str, Any], what: str) -> ConnectorError:
    """The error for an LDAP result code the server returned for ``what`` (e.g. "bind as X", "modify DN")."""
    code = int(result.get("result", -1))
    desc = str(result.get("description", "")) or f"code {code}"
    msg = str(result.get("message", "")).strip()
    text = f"{what}: {desc}" + (f" — {msg}" if msg else "")
    detail = {"ldap_result": code, "ldap_description": desc}
    if code == 49:
        return AuthError(f"{what}: invalid credentials{_bind_reason(msg)}", detail=detail)
    if code in (48, 7):  # inappropriateAuthentication, authMethodNotSupported
        return AuthError(text, detail=detail)
    if code in (8, 13):  # strongerAuthRequired, confidentialityRequired
        return TLSError(f"{text} (the server requires TLS; plain LDAP is never used)", detail=detail)
    if code == 50:
        return Rejected(f"{what}: insufficient access rights for the bind account — {msg}", detail=detail)
    if code == 3:
        return Timeout(text, detail=detail)
    if code in _TRANSIENT_CODES:
        return Unreachable(text, detail=detail)
    return Rejected(text, detail=detail)


def from_exception(exc: BaseException, what: str, tls_failure: BaseException | None = None) -> ConnectorError:
    """The error for an ldap3 (or socket/ssl) exception raised while doing ``what``."""
    if isinstance(exc, ConnectorError):
        return exc
    text = f"{what}: {exc}"
    if isinstance(exc, lx.LDAPOperationResult):
        return from_result({"result": exc.result, "description": exc.description, "message": exc.message}, what)
    if isinstance(exc, lx.LDAPResponseTimeoutError):
        return Timeout(f"{what}: no response in time")
    if isinstance(exc, (lx.LDAPStartTLSError, lx.LDAPCertificateError, lx.LDAPSSLConfigurationError,
                        lx.LDAPSSLNotSupportedError, lx.LDAPInvalidTlsSpecificationError)):
        return TLSError(text)
    if isinstance(exc, lx.LDAPSocketOpenError) and tls_failure is not None:
        return _tls_handshake_error(tls_failure, what)
    if isinstance(exc, (lx.LDAPCommunicationError, lx.LDAPMaximumRetriesError, OSError)):
        if "timed out" in str(exc) or isinstance(exc, TimeoutError):
            return Timeout(f"{what}: timed out ({exc})")
        return Unreachable(text)
    if isinstance(exc, (lx.LDAPBindError, lx.LDAPPasswordIsMandatoryError, lx.LDAPUserNameIsMandatoryError,
                        lx.LDAPUserNameNotAllowedError, lx.LDAPUnknownAuthenticationMethodError)):
        return AuthError(text)
    if isinstance(exc, (lx.LDAPInvalidFilterError, lx.LDAPInvalidDnError, lx.LDAPInvalidValueError,
                        lx.LDAPInvalidScopeError, lx.LDAPAttributeError, lx.LDAPInvalidPortError,
                        lx.LDAPInvalidServerError, lx.LDAPDefinitionError, lx.LDAPConfigurationParameterError)):
        return InvalidInput(text)
    if isinstance(exc, lx.LDAPException):
        return Rejected(text)
    return ConnectorError(f"{what}: unexpected {type(exc).__name__}: {exc}")


def _tls_handshake_error(failure: BaseException, what: str) -> ConnectorError:
    """Classify what went wrong in our TLS handshake (recorded by ``StrictTls``)."""
    if isinstance(failure, ssl.SSLCertVerificationError):
        reason = failure.verify_message or str(failure)
        return TLSError(f"{what}: certificate not accepted: {reason} (untrusted CA or wrong server_name)",
                        detail={"verify_code": failure.verify_code})
    if isinstance(failure, TimeoutError) or "timed out" in str(failure):
        return Timeout(f"{what}: TLS handshake timed out")
    if isinstance(failure, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)) or (
            isinstance(failure, OSError) and failure.errno is None):
        return TLSError(f"{what}: TLS handshake failed ({failure}); is this an LDAPS port? "
                        f"(for port 389 set starttls: true)")
    return Unreachable(f"{what}: {failure}")
