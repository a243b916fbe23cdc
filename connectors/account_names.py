"""What can name a directory (Active Directory) user account — parsed with the standard library only.

One grammar for the CLI, the daemon's intake and the AD connector, so a name one of them accepts the others accept
too (``agent.validate.username`` and ``connectors.active_directory.accounts.validate_account`` both call
:func:`parse_account_name`). No ldap3 here: the CLI validates input before it imports anything heavy.

Accepted forms (``kind``):

``name``       a sAMAccountName or a userPrincipalName — ``o'brien``, ``a(b)c``, ``ünïcode``, ``jdoe@lab.test``.
               AD allows ``@`` in a sAMAccountName, so a value with ``@`` is searched as both.
``downlevel``  ``DOMAIN\\sAMAccountName``; the connector checks DOMAIN is the directory's NetBIOS name.
``dn``         a distinguished name in RFC 4514 syntax (``CN=O'Brien\\, Pat,OU=Staff,DC=lab,DC=test``).
``sid``        an objectSid in SDDL string form (``S-1-5-21-…-1105``).
``guid``       an objectGUID (``0f2c…-…``, optionally in braces).

Escape, don't forbid: every character AD accepts in a sAMAccountName is accepted here (quotes, parentheses,
non-ASCII letters); values reach LDAP only through RFC 4515 filter escaping or as a parsed DN. Refused is only
what cannot be a name: characters the SAM-Account-Name attribute may not contain —
``" / \\ [ ] : ; | = , + * ? < >`` (learn.microsoft.com/windows/win32/adschema/a-samaccountname) — control and
format characters, more than 256 characters (the attribute's Range-Upper), a name made only of periods and
spaces, and leading or trailing whitespace (a paste accident more often than a name; AD's own tools trim it).
NetBIOS domain names: at most 15 characters, none of ``\\ / : * ? " < > |`` (learn.microsoft.com/troubleshoot/
windows-server/active-directory/naming-conventions-for-computer-domain-site-ou).

Because ``=`` and ``,`` can never be in a sAMAccountName, a value containing ``=`` is a DN and nothing else; a
``\\`` outside a DN makes it down-level. A sAMAccountName that happens to look like a SID or GUID is taken as the
SID or GUID (name such an account by DN).
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from dataclasses import dataclass

__all__ = ["MAX_NAME", "SAM_FORBIDDEN", "AccountName", "parse_account_name"]

MAX_NAME = 256             # SAM-Account-Name Range-Upper; also the longest UPN we accept
MAX_UPN = 1024            # User-Principal-Name Range-Upper
MAX_DN = 2048
SAM_FORBIDDEN = frozenset('"/\\[]:;|=,+*?<>')
NETBIOS_FORBIDDEN = frozenset('\\/:*?"<>|')
_SID = re.compile(r"S-1-[0-9]{1,14}(?:-[0-9]{1,10}){1,15}", re.ASCII | re.IGNORECASE)
_GUID = re.compile(r"\{?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\}?", re.ASCII | re.IGNORECASE)
_ATTR_TYPE = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)", re.ASCII)
_DN_SPECIAL = frozenset('"+,;<>\\=#')


@dataclass(frozen=True)
class AccountName:
    """A parsed account reference: how to look it up, and the part a protected-name check compares."""

    kind: str      # name | downlevel | dn | sid | guid
    value: str     # exactly as given
    name: str = ""     # sAMAccountName (downlevel), the name itself (name), canonical SID/GUID text
    domain: str = ""   # NetBIOS domain of a down-level name

    @property
    def short(self) -> str:
        """The lower-cased name a protected list is compared with ('' when only the directory can tell)."""
        if self.kind == "downlevel":
            return self.name.lower()
        if self.kind == "name":
            return self.name.split("@", 1)[0].lower()
        return ""


def _bad_chars(value: str) -> list[str]:
    return sorted({c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn")})


def _check_sam(value: str, what: str) -> None:
    if not value:
        raise ValueError(f"{what} is empty")
    limit = MAX_UPN if "@" in value else MAX_NAME
    if len(value) > limit:
        raise ValueError(f"{what} is {len(value)} characters long (max {limit})")
    bad = sorted({c for c in value if c in SAM_FORBIDDEN})
    if bad:
        raise ValueError(f"{what} contains characters Active Directory does not allow in account names: "
                         f"{' '.join(bad)}")
    if not value.strip(". "):
        raise ValueError(f"{what} consists only of periods and spaces")


def _check_dn(value: str) -> None:
    """RFC 4514 syntax: RDNs of ``type=value`` separated by unescaped ``,`` (``+`` joins multi-valued RDNs);
    inside values, the special characters must be escaped (``\\,``) or hex-escaped (``\\2C``)."""
    if len(value) > MAX_DN:
        raise ValueError(f"is {len(value)} characters long (max {MAX_DN} for a DN)")
    i, n = 0, len(value)
    while True:
        eq = value.find("=", i)
        if eq < 0:
            raise ValueError("is not a valid DN (an RDN without '=')")
        attr = value[i:eq].strip()
        if not _ATTR_TYPE.fullmatch(attr):
            raise ValueError(f"is not a valid DN (attribute type {attr!r})")
        j = eq + 1
        if j < n and value[j] == "#":           # BER-encoded value: '#' hex pairs
            k = j + 1
            while k < n and value[k] in "0123456789abcdefABCDEF":
                k += 1
            if (k - j - 1) == 0 or (k - j - 1) % 2:
                raise ValueError("is not a valid DN (bad #hex value)")
            j = k
        else:
            start = j
            while j < n and value[j] not in ",+":
                c = value[j]
                if c == "\\":
                    nxt = value[j + 1:j + 2]
                    if nxt and nxt in _DN_SPECIAL | {" "}:
                        j += 2
                        continue
                    if re.fullmatch(r"[0-9A-Fa-f]{2}", value[j + 1:j + 3]):
                        j += 3
                        continue
                    raise ValueError("is not a valid DN (a '\\' must escape a special character or two hex "
                                     "digits, RFC 4514)")
                if c in '";<>=' or c == "\x00":
                    raise ValueError(f"is not a valid DN (unescaped {c!r} in a value, RFC 4514)")
                j += 1
            if not value[start:j].strip():
                raise ValueError("is not a valid DN (an empty RDN value)")
        if j >= n:
            return
        i = j + 1


def parse_account_name(value: object) -> AccountName:
    """Classify ``value``; ValueError (message without a field name: callers prefix theirs) if it cannot be one."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    bad = _bad_chars(value)
    if bad:
        raise ValueError(f"{value[:60]!r} contains control or format characters "
                         f"({', '.join(f'U+{ord(c):04X}' for c in bad[:3])})")
    if value != value.strip():
        raise ValueError(f"{value!r} has leading or trailing whitespace")
    if "=" in value:
        try:
            _check_dn(value)
        except ValueError as exc:
            raise ValueError(f"{value[:80]!r} {exc}") from None
        return AccountName("dn", value)
    if _SID.fullmatch(value):
        return AccountName("sid", value, name=value.upper())
    guid = _GUID.fullmatch(value)
    if guid:
        return AccountName("guid", value, name=str(uuid.UUID(guid.group(1))))
    if "\\" in value:
        domain, _, sam = value.partition("\\")
        if not domain or len(domain) > 15 or any(c in NETBIOS_FORBIDDEN for c in domain) or domain[0] == ".":
            raise ValueError(f"{value!r}: {domain!r} is not a NetBIOS domain name (DOMAIN\\name: at most 15 "
                             "characters, none of \\ / : * ? \" < > |)")
        try:
            _check_sam(sam, "the name after DOMAIN\\")
        except ValueError as exc:
            raise ValueError(f"{value!r}: {exc}") from None
        return AccountName("downlevel", value, name=sam, domain=domain)
    try:
        _check_sam(value, "the name")
    except ValueError as exc:
        raise ValueError(f"{value[:80]!r}: {exc}") from None
    return AccountName("name", value, name=value)
