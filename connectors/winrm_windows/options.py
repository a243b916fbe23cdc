"""Per-host WinRM settings from ``Target.options``, validated before any connection is made.

Secure by default: HTTPS on 5986 with certificate validation. Plain HTTP (5985) only with ``allow_insecure``,
and then every message must be encrypted, which works for NTLM and Kerberos — so Basic over HTTP is refused here
rather than silently sent in clear text.

Refused up front (``validate`` and ``check-config``, before any plan is shown):

* ``credssp``: it delegates the operator's password to the target, and a containment target is presumed
  compromised (MS-CSSP: the client sends its credentials to the server; "Do not use CredSSP with untrusted
  hosts" in Microsoft's Remote Management security guidance).
* ``kerberos`` without ``server_name`` (or with an IP there): the ticket is for ``HTTP/<server_name>``; by IP the
  KDC is asked for ``HTTP/<ip>``, which Active Directory does not have ("Server not found in Kerberos database").
* ``kerberos`` without ``realm`` and ``kdc`` addresses (the agent never asks DNS for a KDC) or without the
  python-gssapi and python-krb5 bindings (``pip install 'containment-agent[kerberos]'``).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import InvalidInput
from connectors.types import Target
from connectors.winrm_windows.powershell import validate_port

__all__ = ["TRANSPORTS", "WinRMSettings", "parse_settings"]

TRANSPORTS = ("ntlm", "kerberos", "basic")
_KNOWN = {"ca_file", "server_name", "transport", "port", "allow_insecure", "allow_rdp", "deadman_minutes",
          "operation_timeout", "realm", "kdc", "keytab", "keep_dhcp_dns", "domain_controllers"}
_REALM = re.compile(r"^[A-Z0-9](?:[A-Z0-9.-]{0,253}[A-Z0-9])?$")


@dataclass(frozen=True)
class WinRMSettings:
    """What :class:`~connectors.winrm_windows.session.WinRMSession` needs to build its pywinrm Protocol."""

    scheme: str
    port: int
    transport: str
    ca_file: str | None
    server_name: str | None
    allow_insecure: bool
    allow_rdp: bool
    deadman_minutes: int
    keep_dhcp_dns: bool = True
    domain_controllers: tuple[str, ...] = field(default=())
    realm: str | None = None
    kdc: tuple[str, ...] = field(default=())
    keytab: str | None = None

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
    if transport == "credssp":
        raise InvalidInput("transport credssp is refused for containment targets: CredSSP delegates the operator's "
                           "password to the host, which is presumed compromised; use kerberos or ntlm",
                           detail={"field": "transport", "value": transport})
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
    realm, kdc, keytab = _kerberos_options(opts, transport)
    dcs = opts.get("domain_controllers", [])
    if isinstance(dcs, str):
        dcs = [dcs]
    if not isinstance(dcs, list):
        raise InvalidInput("option domain_controllers must be a list of IP addresses",
                           detail={"field": "domain_controllers"})
    for dc in dcs:
        try:
            ipaddress.ip_address(dc)
        except (ValueError, TypeError):
            raise InvalidInput(f"option domain_controllers: {dc!r} is not an IP address",
                               detail={"field": "domain_controllers", "value": dc}) from None
    keep = opts.get("keep_dhcp_dns", True)
    if not isinstance(keep, bool):
        raise InvalidInput(f"option keep_dhcp_dns must be true or false, got {keep!r}",
                           detail={"field": "keep_dhcp_dns"})
    return WinRMSettings(
        scheme="http" if allow_insecure else "https",
        port=port,
        transport=transport,
        ca_file=opts.get("ca_file"),
        server_name=opts.get("server_name"),
        allow_insecure=allow_insecure,
        allow_rdp=_flag(opts, "allow_rdp"),
        deadman_minutes=minutes,
        keep_dhcp_dns=keep,
        domain_controllers=tuple(str(d) for d in dcs),
        realm=realm,
        kdc=kdc,
        keytab=keytab,
    )


def _kerberos_options(opts: Mapping[str, Any], transport: str) -> tuple[str | None, tuple[str, ...], str | None]:
    """``realm``, ``kdc`` addresses and optional ``keytab`` — required (and only allowed) with kerberos."""
    given = [k for k in ("realm", "kdc", "keytab") if k in opts]
    if transport != "kerberos":
        if given:
            raise InvalidInput(f"option(s) {', '.join(given)} only apply to transport kerberos",
                               detail={"field": given[0]})
        return None, (), None
    name = opts.get("server_name")
    is_ip = True
    if isinstance(name, str):
        try:
            ipaddress.ip_address(name)
        except ValueError:
            is_ip = False
    if not name or is_ip or "." not in str(name):
        raise InvalidInput(f"transport kerberos needs server_name = the host's FQDN (the ticket is for HTTP/<fqdn>; "
                           f"HTTP/<ip> is not in the KDC's database), got {name!r}",
                           detail={"field": "server_name", "value": name})
    realm = opts.get("realm")
    if not isinstance(realm, str) or not _REALM.match(realm):
        raise InvalidInput(f"transport kerberos needs realm (upper case, e.g. CORP.EXAMPLE), got {realm!r}",
                           detail={"field": "realm", "value": realm})
    kdc = opts.get("kdc")
    if isinstance(kdc, str):
        kdc = [kdc]
    if not isinstance(kdc, list) or not kdc:
        raise InvalidInput("transport kerberos needs kdc: the KDC (domain controller) addresses, so no DNS lookup "
                           "decides where tickets come from", detail={"field": "kdc", "value": kdc})
    for k in kdc:
        try:
            ipaddress.ip_address(k)
        except (ValueError, TypeError):
            raise InvalidInput(f"option kdc: {k!r} is not an IP address", detail={"field": "kdc", "value": k}) from None
    keytab = opts.get("keytab")
    if keytab is not None and (not isinstance(keytab, str) or not keytab):
        raise InvalidInput("option keytab must be a file path", detail={"field": "keytab"})
    missing = [m for m in ("gssapi", "krb5") if importlib.util.find_spec(m) is None]
    if missing:
        raise InvalidInput(f"transport kerberos needs the python {' and '.join(missing)} binding(s), not installed: "
                           "pip install 'containment-agent[kerberos]' (needs libkrb5-dev to build)",
                           detail={"field": "transport", "value": "kerberos"})
    return realm, tuple(str(k) for k in kdc), keytab
