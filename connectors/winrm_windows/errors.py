"""Translate pywinrm / requests / spnego failures into :mod:`connectors.errors`, and decode CLIXML stderr.

The mapping is the one place that decides what the engine retries: transport trouble (refused, reset, timed out,
503) is transient; credentials, certificates and PowerShell errors are permanent. Order matters because
``requests`` nests its exceptions (``SSLError`` and ``ConnectTimeout`` are both ``ConnectionError``).
pywinrm is imported lazily, so merely loading the connector stays cheap.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from connectors.errors import (
    AuthError,
    ConnectorError,
    Rejected,
    Timeout,
    TLSError,
    Unreachable,
)

__all__ = ["decode_clixml", "map_exception"]

_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_PS_NS = "{http://schemas.microsoft.com/powershell/2004/04}"


def map_exception(exc: BaseException, *, where: str) -> ConnectorError:
    """The :class:`ConnectorError` for a library exception met while doing ``where`` (no secrets in messages)."""
    if isinstance(exc, ConnectorError):
        return exc
    import requests
    import winrm.exceptions as wx

    if isinstance(exc, wx.InvalidCredentialsError | wx.AuthenticationError):
        return AuthError(f"{where}: credentials rejected by the WinRM service")
    if isinstance(exc, wx.WinRMOperationTimeoutError):
        return Timeout(f"{where}: WS-Management operation timed out")
    if isinstance(exc, wx.WSManFaultError):
        subcode = (exc.fault_subcode or "").split(":")[-1]
        if subcode == "TimedOut":
            return Timeout(f"{where}: WS-Management operation timed out ({exc.reason.strip()})")
        if exc.code == 401 or subcode == "AccessDenied":
            return AuthError(f"{where}: access denied ({exc.reason.strip()})")
        return Rejected(f"{where}: WS-Management fault {subcode or exc.fault_code}: {exc.reason.strip()}",
                        detail={"wsman_fault_code": exc.wsman_fault_code, "http_status": exc.code})
    if isinstance(exc, wx.WinRMTransportError):
        if exc.code in (401, 403):
            return AuthError(f"{where}: HTTP {exc.code} from the WinRM service")
        if exc.code in (502, 503, 504):
            return Unreachable(f"{where}: WinRM service unavailable (HTTP {exc.code})",
                               detail={"http_status": exc.code})
        return Rejected(f"{where}: WinRM service answered HTTP {exc.code}", detail={"http_status": exc.code})
    kerberos_errors = _kerberos_error_types()
    if kerberos_errors and isinstance(exc, kerberos_errors):
        # Unknown SPN, clock skew, wrong password, KDC refusing: retrying cannot help.
        return AuthError(f"{where}: Kerberos authentication failed ({type(exc).__name__}: {_short_auth(exc)})")
    if isinstance(exc, requests.exceptions.SSLError):
        return TLSError(f"{where}: TLS certificate validation failed ({_short(exc)})")
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        return Timeout(f"{where}: no answer in time ({type(exc).__name__})")
    if isinstance(exc, requests.exceptions.ConnectionError | ConnectionError):
        return Unreachable(f"{where}: connection failed ({_short(exc)})")
    if isinstance(exc, requests.exceptions.RequestException):
        return Unreachable(f"{where}: HTTP failure ({type(exc).__name__})")
    spnego_error = _spnego_error_type()
    if spnego_error is not None and isinstance(exc, spnego_error):
        return AuthError(f"{where}: authentication handshake failed ({type(exc).__name__})")
    if isinstance(exc, wx.WinRMError):
        return Rejected(f"{where}: {exc}")
    if isinstance(exc, TimeoutError):
        return Timeout(f"{where}: no answer in time")
    return ConnectorError(f"{where}: unexpected {type(exc).__name__}")


def _kerberos_error_types() -> tuple[type[BaseException], ...]:
    types: list[type[BaseException]] = []
    try:
        from winrm.vendor.requests_kerberos.exceptions import KerberosExchangeError, MutualAuthenticationError

        types += [KerberosExchangeError, MutualAuthenticationError]
    except ImportError:  # pragma: no cover - vendored in pywinrm
        pass
    try:
        from gssapi.raw.misc import GSSError

        types.append(GSSError)
    except ImportError:
        pass
    try:  # the KDC refusing a password or keytab while pyspnego gets the first ticket
        from krb5 import Krb5Error

        types.append(Krb5Error)
    except ImportError:
        pass
    return tuple(types)


def _short_auth(exc: BaseException) -> str:
    """The library's reason, without anything that could be a secret (GSS messages name principals only)."""
    return " ".join(str(exc).split())[:200]


def _spnego_error_type() -> type[BaseException] | None:
    try:
        from spnego.exceptions import SpnegoError
    except ImportError:  # pragma: no cover - pyspnego ships with requests-ntlm
        return None
    return SpnegoError


def _short(exc: BaseException) -> str:
    text = str(exc)
    # urllib3 wraps reasons in long reprs; keep the part that names the problem.
    for marker in ("CERTIFICATE_VERIFY_FAILED", "Hostname mismatch", "certificate verify failed",
                   "Connection refused", "Connection reset", "Max retries exceeded"):
        if marker in text:
            idx = text.find(marker)
            return text[idx: idx + 160].split("'")[0].rstrip(" (),")
    return type(exc).__name__


def decode_clixml(stderr: str) -> str:
    """Human text of a PowerShell ``#< CLIXML`` error stream (plain text is returned as is).

    ``powershell -EncodedCommand`` without a console serialises its error records as CLIXML; the useful part is
    the ``<S S="Error">`` strings with ``_x000D__x000A_`` escapes for CR/LF.
    """
    text = stderr.strip()
    if not text.startswith("#< CLIXML"):
        return text
    body = text.split("\n", 1)[1] if "\n" in text else ""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return text
    lines: list[str] = []
    for node in root.iter(f"{_PS_NS}S"):
        if node.get("S") == "Error" and node.text:
            lines.append(_CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), node.text))
    message = "".join(lines).replace("\r\n", "\n")
    return "\n".join(line.rstrip() for line in message.splitlines() if line.strip()) or text
