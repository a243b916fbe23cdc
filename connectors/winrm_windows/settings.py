"""Per-host WinRM settings from ``Target.options``, validated before any connection is made.

Secure by default: HTTPS on 5986 with certificate validation. Plain HTTP (5985) only with ``allow_insecure``,
and then pywinrm must encrypt every message, which it can only do for NTLM, Kerberos and CredSSP — so Basic
over HTTP is refused here rather than silently sent in clear text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.errors import InvalidInput
from connectors.types import Target
from connectors.winrm_windows.powershell import validate_port

__all__ = ["TRANSPORTS", "WinRMSettings", "parse_settings"]

TRANSPORTS = ("ntlm", "kerberos", "credssp", "basic")
_KNOWN = {"ca_file", "server_name", "transport", "port", "allow_insecure", "allow_rdp", "deadman_minutes",
          "operation_timeout"}


@dataclass(frozen=True)
class WinRMSettings:
    """What :class:`~connectors.winrm_windows.transport.WinRMSession` needs to build its pywinrm Protocol."""

    scheme: str
    port: int
    transport: str
    ca_file: str | None
    server_name: str | None
    allow_insecure: bool
    allow_rdp: bool
    deadman_minutes: int

    @property
    def message_encryption(self) -> str:
        """``always`` over HTTP (refuse clear text), ``auto`` over HTTPS (TLS already protects it)."""
        return "always" if self.scheme == "http" else "auto"


def _flag(options: Mapping[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"option {key} must be true or false, got {value!r}", detail={"field": key})
    return value


def parse_settings(target: Target) -> WinRMSettings:
    """Validate ``target.options`` (unknown keys refused, so a typo cannot silently weaken security)."""
    opts = dict(target.options)
    unknown = sorted(set(opts) - _KNOWN)
    if unknown:
        raise InvalidInput(f"unknown winrm_windows option(s): {', '.join(unknown)} "
                           f"(known: {', '.join(sorted(_KNOWN))})", detail={"field": "options"})
    allow_insecure = _flag(opts, "allow_insecure")
    transport = opts.get("transport", "ntlm")
    if transport not in TRANSPORTS:
        raise InvalidInput(f"option transport {transport!r} is not one of {', '.join(TRANSPORTS)}",
                           detail={"field": "transport", "value": transport})
    if allow_insecure and transport == "basic":
        raise InvalidInput("transport basic is only allowed over HTTPS: over HTTP pywinrm cannot encrypt "
                           "Basic-authenticated messages; use ntlm, kerberos or credssp",
                           detail={"field": "transport", "value": transport})
    port = opts.get("port", target.port)
    port = validate_port(port if port is not None else (5985 if allow_insecure else 5986), field="port")
    minutes = opts.get("deadman_minutes", 10)
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
        raise InvalidInput(f"option deadman_minutes must be 1..1440, got {minutes!r}",
                           detail={"field": "deadman_minutes", "value": minutes})
    for key in ("ca_file", "server_name"):
        value = opts.get(key)
        if value is not None and (not isinstance(value, str) or not value or any(c.isspace() for c in value)):
            raise InvalidInput(f"option {key} must be a non-empty string without spaces", detail={"field": key})
    return WinRMSettings(
        scheme="http" if allow_insecure else "https",
        port=port,
        transport=transport,
        ca_file=opts.get("ca_file"),
        server_name=opts.get("server_name"),
        allow_insecure=allow_insecure,
        allow_rdp=_flag(opts, "allow_rdp"),
        deadman_minutes=minutes,
    )
