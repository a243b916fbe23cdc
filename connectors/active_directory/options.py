"""Directory settings from the inventory (``Target.options``), checked before any connection is opened.

The Target of this connector is the *directory* (a domain controller): ``Target.address`` is the DC's pinned
address; the account to act on comes in the action's ``account`` argument. Recognised options::

    base_dn: DC=example,DC=com        # required; accounts outside it are refused
    server_name: dc01.example.com     # the name the DC's certificate must carry (default: the address)
    ca_file: /etc/agent/ad-ca.pem     # CA that signed it (default: the system trust store)
    starttls: false                   # false → LDAPS (636); true → StartTLS on 389
    port: 636
    privileged_groups: [Tier0 Admins] # added to the built-in privileged groups
    protected_accounts: [breakglass]  # added to Administrator (RID 500), krbtgt and the bind account
    netbios_domain: LAB               # optional: lets DOMAIN\\name be checked before connecting (else read
                                      # from the directory's crossRef when the name is resolved)

There is deliberately no way to turn TLS or certificate validation off: a simple bind over plain LDAP sends the
bind password in clear text (and AD/Samba refuse it anyway with ``strongerAuthRequired``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.dn import parse_dn

from connectors.errors import InvalidInput, TLSError
from connectors.types import Target

__all__ = ["DEFAULT_PRIVILEGED_GROUPS", "DirectoryOptions", "dn_within", "normalize_dn"]

#: Built-in privileged groups, found by SID so that localized group names do not matter.
#: ``"-512"`` style entries are relative to the domain SID; ``S-1-5-32-*`` are BUILTIN groups.
DEFAULT_PRIVILEGED_GROUPS: Mapping[str, str] = {
    "Domain Admins": "-512",
    "Enterprise Admins": "-519",
    "Schema Admins": "-518",
    "Administrators": "S-1-5-32-544",
    "Account Operators": "S-1-5-32-548",
    "Backup Operators": "S-1-5-32-551",
}

_KNOWN = {"base_dn", "server_name", "ca_file", "starttls", "port", "privileged_groups", "protected_accounts",
          "netbios_domain"}
_INSECURE = {"tls", "use_ssl", "ssl", "insecure", "validate", "verify", "verify_tls", "allow_plain", "plain"}
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


def _rdns(dn: str) -> list[str]:
    return [f"{attr.lower()}={value.lower()}" for attr, value, _sep in parse_dn(dn, escape=False, strip=True)]


def normalize_dn(dn: str) -> str:
    """A comparable form of a DN (attribute types and values lower-cased, no spaces around separators)."""
    return ",".join(_rdns(dn))


def dn_within(dn: str, base: str) -> bool:
    """True if ``dn`` is ``base`` or below it, compared RDN by RDN (not as a string suffix)."""
    inner, outer = _rdns(dn), _rdns(base)
    return len(inner) >= len(outer) and inner[len(inner) - len(outer):] == outer


def _names(options: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = options.get(key) or []
    if isinstance(value, str) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput(f"options.{key} must be a list of non-empty names, got {value!r}")
    return tuple(v.strip() for v in value)


@dataclass(frozen=True)
class DirectoryOptions:
    """Validated connection and policy settings for one directory."""

    address: str
    port: int
    starttls: bool
    base_dn: str
    server_name: str
    ca_file: str | None
    privileged_groups: tuple[str, ...] = ()
    protected_accounts: tuple[str, ...] = ()
    netbios_domain: str = ""

    @classmethod
    def from_target(cls, target: Target) -> DirectoryOptions:
        """Parse ``target.options``; raises ``TLSError`` for any attempt to weaken TLS, ``InvalidInput`` else."""
        opts = dict(target.options)
        weakening = sorted(k for k in opts if k in _INSECURE)
        if weakening:
            raise TLSError(f"directory {target.name!r}: option(s) {', '.join(weakening)} refused — the agent only "
                           f"binds over LDAPS or StartTLS with certificate validation (plain LDAP would send the "
                           f"bind password in clear)", target=target.name, connector="active_directory")
        unknown = sorted(set(opts) - _KNOWN)
        if unknown:
            raise InvalidInput(f"directory {target.name!r}: unknown option(s) {', '.join(unknown)} "
                               f"(known: {', '.join(sorted(_KNOWN))})", target=target.name)
        try:
            address = str(ipaddress.ip_address(target.address))
        except ValueError:
            raise InvalidInput(f"directory {target.name!r}: address {target.address!r} is not an IP address "
                               f"(names are resolved and pinned before connectors run)") from None
        base_dn = opts.get("base_dn")
        if not isinstance(base_dn, str) or not base_dn.strip():
            raise InvalidInput(f"directory {target.name!r}: options.base_dn is required (e.g. DC=example,DC=com)")
        try:
            if not parse_dn(base_dn, strip=True):
                raise LDAPInvalidDnError("empty")
        except LDAPInvalidDnError:
            raise InvalidInput(f"directory {target.name!r}: options.base_dn {base_dn!r} is not a DN") from None
        starttls = opts.get("starttls", False)
        if not isinstance(starttls, bool):
            raise InvalidInput(f"directory {target.name!r}: options.starttls must be true or false, got {starttls!r}")
        port = opts.get("port", target.port or (389 if starttls else 636))
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise InvalidInput(f"directory {target.name!r}: options.port {port!r} is not a TCP port")
        server_name = opts.get("server_name", address)
        if not isinstance(server_name, str) or not (_HOSTNAME.match(server_name) or _is_ip(server_name)):
            raise InvalidInput(f"directory {target.name!r}: options.server_name {server_name!r} is not a host name")
        ca_file = opts.get("ca_file")
        if ca_file is not None and (not isinstance(ca_file, str) or not ca_file or "\0" in ca_file):
            raise InvalidInput(f"directory {target.name!r}: options.ca_file {ca_file!r} is not a path")
        netbios = opts.get("netbios_domain") or ""
        if not isinstance(netbios, str) or len(netbios) > 15 or netbios.startswith(".") or \
                any(c in '\\/:*?"<>| ' for c in netbios):
            raise InvalidInput(f"directory {target.name!r}: options.netbios_domain {netbios!r} is not a NetBIOS "
                               "domain name")
        return cls(address=address, port=port, starttls=starttls, base_dn=base_dn.strip(),
                   server_name=server_name, ca_file=ca_file,
                   privileged_groups=_names(opts, "privileged_groups"),
                   protected_accounts=_names(opts, "protected_accounts"), netbios_domain=netbios)


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
