"""Finding exactly one user account from what a technician typed, and refusing the ones we must never touch.

An account is named by sAMAccountName, userPrincipalName, ``DOMAIN\\name``, DN, objectSid or objectGUID (the
grammar is :mod:`connectors.account_names`, shared with the CLI and the daemon). Input is validated *before* any
connection (``validate_account``) and every value that reaches a filter goes through ``escape_filter_chars``
(RFC 4515; binary SIDs/GUIDs through ``escape_bytes``), so ``o'brien`` and ``a(b)c`` are ordinary names. Names
are searched as ``(|(sAMAccountName=v)(userPrincipalName=v))``: AD allows ``@`` in a sAMAccountName, so
``bob@corp`` can be one user's UPN and another's sAMAccountName — more than one match is refused as ambiguous,
never guessed. A down-level name must carry this directory's NetBIOS domain.

Protected accounts (built-in Administrator RID 500, krbtgt RID 502 and ``krbtgt_*``, the agent's own bind account
and ``options.protected_accounts``) are refused by name in ``validate`` and again, by SID/DN/UPN, right after
resolution — always before any modify is sent. Resolving many names at once (batches) is
:mod:`connectors.active_directory.batch_resolve`.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPInvalidDnError
from ldap3.utils.conv import escape_bytes, escape_filter_chars
from ldap3.utils.dn import parse_dn

from connectors.account_names import AccountName, parse_account_name
from connectors.active_directory.options import DirectoryOptions, dn_within, normalize_dn
from connectors.active_directory.session import ADSession, Entry
from connectors.errors import InvalidInput, Rejected

__all__ = [
    "MAX_IDENTIFIER",
    "USER_FILTER",
    "Account",
    "as_int",
    "check_not_protected",
    "domain_problem",
    "first",
    "guid_value",
    "how_named",
    "looks_like_dn",
    "match_keys",
    "name_filter",
    "name_key",
    "resolve",
    "resolve_snapshot",
    "sid_to_bytes",
    "sid_to_str",
    "validate_account",
]

MAX_IDENTIFIER = 256
USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
BUILTIN_PROTECTED = ("administrator", "krbtgt")
PROTECTED_RIDS = {500: "the built-in Administrator (RID 500)", 502: "krbtgt (RID 502)"}
IDENTITY_ATTRS = ("sAMAccountName", "userPrincipalName", "objectGUID", "objectSid", "distinguishedName")


def validate_account(value: Any, opts: DirectoryOptions, field_name: str = "account") -> str:
    """Return ``value`` if it may name an account, else raise InvalidInput naming the field and value.

    The grammar is :mod:`connectors.account_names` (shared with the CLI and the daemon): sAMAccountName, UPN,
    ``DOMAIN\\name``, DN, objectSid, objectGUID. Here it is also checked against this directory: a DN must lie
    under ``base_dn``; a down-level domain must be ``options.netbios_domain`` when that is configured (else it is
    checked against the directory's crossRef at resolution).
    """
    try:
        parsed = parse_account_name(value)
    except ValueError as exc:
        raise InvalidInput(f"{field_name}: not a valid account name: {exc}",
                           detail={"field": field_name}) from None
    if parsed.kind == "dn":
        try:
            if not parse_dn(parsed.value, strip=True):
                raise LDAPInvalidDnError("empty")
            inside = dn_within(parsed.value, opts.base_dn)
        except LDAPInvalidDnError:
            raise InvalidInput(f"{field_name} {value!r} is not a valid DN") from None
        if not inside:
            raise InvalidInput(f"{field_name} {value!r} is outside the directory's base DN {opts.base_dn!r}")
    if parsed.kind == "downlevel" and opts.netbios_domain and \
            parsed.domain.casefold() != opts.netbios_domain.casefold():
        raise InvalidInput(f"{field_name} {value!r}: domain {parsed.domain!r} is not this directory's NetBIOS "
                           f"domain {opts.netbios_domain!r}", detail={"field": field_name, "reason": "wrong_domain"})
    return parsed.value


def looks_like_dn(value: str) -> bool:
    """True if ``value`` is a DN rather than a name (``=`` can never be part of an account name)."""
    return "=" in value


_looks_like_dn = looks_like_dn


def check_by_name(value: str, opts: DirectoryOptions, field_name: str = "account") -> None:
    """Pre-connection protection check on the literal name (the SID check follows after resolution)."""
    parsed = parse_account_name(value)
    plain = parsed.short
    protected = {p.lower() for p in opts.protected_accounts}
    rid = parsed.name.rsplit("-", 1)[1] if parsed.kind == "sid" else ""
    if plain in BUILTIN_PROTECTED or plain.startswith("krbtgt") or value.lower() in protected or \
            (plain and plain in protected) or (rid and int(rid) in PROTECTED_RIDS):
        raise InvalidInput(f"{field_name} {value!r} is a protected account and is never changed",
                           detail={"reason": "protected_account"})


def sid_to_bytes(sid: str) -> bytes:
    """``S-1-5-21-...`` → binary objectSid (MS-DTYP 2.4.2.2: revision, count, 48-bit big-endian authority,
    little-endian 32-bit sub-authorities)."""
    parts = sid.upper().split("-")
    revision, authority, subs = int(parts[1]), int(parts[2]), [int(x) for x in parts[3:]]
    return bytes([revision, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def _terms(value: str) -> tuple[str, tuple[str, str]]:
    """The filter terms that find ``value`` (escaped) and the key its entry is matched under locally.

    Names are validated before they get here; a value that does not parse is still only ever an escaped
    sAMAccountName/UPN value (defence in depth), never filter syntax."""
    try:
        parsed = parse_account_name(value)
    except ValueError:
        parsed = AccountName("name", value, name=value)
    if parsed.kind == "dn":
        return f"(distinguishedName={escape_filter_chars(value)})", ("dn", normalize_dn(value))
    if parsed.kind == "sid":
        return f"(objectSid={escape_bytes(sid_to_bytes(parsed.name))})", ("sid", parsed.name)
    if parsed.kind == "guid":
        return f"(objectGUID={guid_value(parsed.name)})", ("guid", parsed.name)
    if parsed.kind == "downlevel":
        return f"(sAMAccountName={escape_filter_chars(parsed.name)})", ("sam", parsed.name.casefold())
    esc = escape_filter_chars(value)
    return f"(sAMAccountName={esc})(userPrincipalName={esc})", ("name", value.casefold())


_HOW = {"dn": "DN", "sid": "objectSid", "guid": "objectGUID", "downlevel": "sAMAccountName",
        "name": "sAMAccountName or userPrincipalName"}


def how_named(value: str) -> str:
    """How a validated name is searched, in words for messages ('DN', 'objectSid', ...)."""
    try:
        return _HOW[parse_account_name(value).kind]
    except ValueError:
        return _HOW["name"]


def domain_problem(session: ADSession, value: str) -> str:
    """Why a down-level ``DOMAIN\\name`` does not belong to this directory ('' when it does, or is not one)."""
    try:
        parsed = parse_account_name(value)
    except ValueError:
        return ""
    if parsed.kind != "downlevel":
        return ""
    mine = session.netbios_domain()
    if not mine:
        return f"{value!r}: the directory's NetBIOS domain could not be read; name the account without DOMAIN\\"
    if parsed.domain.casefold() != mine.casefold():
        return f"{value!r}: domain {parsed.domain!r} is not this directory's NetBIOS domain {mine!r}"
    return ""


def sid_to_str(raw: bytes) -> str:
    """Binary objectSid → ``S-1-5-21-...``."""
    revision, count = raw[0], raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = struct.unpack(f"<{count}I", raw[8:8 + 4 * count])
    return "S-" + "-".join(str(x) for x in (revision, authority, *subs))


def first(entry: Entry, attr: str) -> bytes | None:
    values = entry["attributes"].get(attr) or []
    return values[0] if values else None


def as_int(entry: Entry, attr: str) -> int | None:
    value = first(entry, attr)
    return int(value) if value is not None else None


def _text(entry: Entry, attr: str) -> str:
    value = first(entry, attr)
    return value.decode("utf-8") if value is not None else ""


@dataclass(frozen=True)
class Account:
    """One resolved user: identity fields plus the raw entry it was read from."""

    dn: str
    sam: str
    upn: str
    guid: str
    sid: str
    entry: Entry = field(repr=False)

    @classmethod
    def from_entry(cls, entry: Entry) -> Account:
        guid = first(entry, "objectGUID")
        sid = first(entry, "objectSid")
        return cls(dn=entry["dn"], sam=_text(entry, "sAMAccountName"), upn=_text(entry, "userPrincipalName"),
                   guid=str(uuid.UUID(bytes_le=guid)) if guid else "", sid=sid_to_str(sid) if sid else "",
                   entry=entry)

    @property
    def rid(self) -> int:
        return int(self.sid.rsplit("-", 1)[1]) if self.sid else -1

    def identity(self) -> dict[str, str]:
        """JSON-safe identity for snapshots and results."""
        return {"dn": self.dn, "sAMAccountName": self.sam, "userPrincipalName": self.upn, "objectGUID": self.guid,
                "objectSid": self.sid}


def resolve(session: ADSession, value: str, attributes: Sequence[str] = ()) -> Account:
    """Exactly one user account named ``value`` (any form of :mod:`connectors.account_names`), else Rejected."""
    attrs = sorted({*IDENTITY_ATTRS, *attributes})
    problem = domain_problem(session, value)
    if problem:
        raise Rejected(problem, detail={"reason": "wrong_domain", "account": value})
    if _looks_like_dn(value):
        entries, over = session.search(value, USER_FILTER, attrs, scope=ldap3.BASE)
    else:
        terms, _key = _terms(value)
        filt = f"(&{USER_FILTER}(|{terms}))"
        entries, over = session.search(session.opts.base_dn, filt, attrs, size_limit=2)
    how = how_named(value)
    if not entries:
        raise Rejected(f"no user account with {how} {value!r} under {session.opts.base_dn!r}",
                       detail={"reason": "not_found", "account": value})
    if len(entries) > 1 or over:
        dns = [e["dn"] for e in entries]
        raise Rejected(f"account {value!r} is ambiguous: it matches {', '.join(dns)}{' and more' if over else ''}"
                       f" — name it by DN", detail={"reason": "ambiguous", "account": value, "matches": dns})
    account = Account.from_entry(entries[0])
    check_not_protected(session, account)
    return account


def resolve_snapshot(session: ADSession, identity: dict[str, Any], attributes: Sequence[str] = ()) -> Account:
    """The account a snapshot recorded, found by objectGUID (survives renames and moves), else by DN."""
    attrs = sorted({*IDENTITY_ATTRS, *attributes})
    guid = identity.get("objectGUID")
    entries: list[Entry] = []
    if isinstance(guid, str) and guid:
        entries, _ = session.search(f"<GUID={uuid.UUID(guid)}>", USER_FILTER, attrs, scope=ldap3.BASE)
    if not entries and identity.get("dn"):
        entries, _ = session.search(str(identity["dn"]), USER_FILTER, attrs, scope=ldap3.BASE)
    if len(entries) != 1:
        raise Rejected(f"the account recorded in the snapshot ({identity.get('dn')!r}) no longer exists",
                       detail={"reason": "not_found"})
    return Account.from_entry(entries[0])


@functools.lru_cache(maxsize=32)
def _protected_names(protected: tuple[str, ...], bind_user: str) -> tuple[frozenset[str], str, bool]:
    """Normalised protected names and bind user, and whether any is a DN (parsed once, not once per account)."""
    listed = frozenset(_norm(p) for p in protected)
    bind = _norm(bind_user)
    return listed, bind, any("," in n for n in (*listed, bind))


def check_not_protected(session: ADSession, account: Account) -> None:
    """Raise Rejected if ``account`` is protected; called after every resolution, before any modify."""
    reason = PROTECTED_RIDS.get(account.rid)
    listed, bind, dns = _protected_names(tuple(session.opts.protected_accounts), session.bind_user)
    names = {account.sam.lower(), account.upn.lower()}
    if dns:  # an account DN has two RDNs at least, so only a listed name with a comma can equal one
        names.add(normalize_dn(account.dn))
    if reason is None and account.sam.lower().startswith("krbtgt"):
        reason = "a krbtgt account"
    if reason is None and names & listed:
        reason = "listed in protected_accounts"
    if reason is None and bind in names:
        reason = "the agent's own bind account"
    if reason is not None:
        raise Rejected(f"account {account.sam!r} ({account.dn}) is protected: {reason}; it is never changed",
                       detail={"reason": "protected_account", "dn": account.dn})


def _norm(name: str) -> str:
    if _looks_like_dn(name):
        try:
            return normalize_dn(name)
        except LDAPInvalidDnError:
            return name.lower()
    return name.split("\\", 1)[1].lower() if "\\" in name else name.lower()



def name_filter(names: Sequence[str], also: str = "") -> str:
    """One OR filter for validated ``names`` (each by the attribute its form names: distinguishedName,
    sAMAccountName/userPrincipalName, objectSid, objectGUID), ANDed with the user filter and ``also`` (a
    constant term of ours, e.g. "enabled only").

    Every value goes through ldap3's ``escape_filter_chars`` (binary SIDs/GUIDs through ``escape_bytes``);
    the filter is parsed and encoded by ldap3.
    """
    return f"(&{USER_FILTER}{also}(|{''.join(_terms(v)[0] for v in names)}))"


def guid_value(guid: str) -> str:
    """An objectGUID (as recorded: ``str(uuid)``) as a filter value, escaped by ldap3's ``escape_bytes``."""
    return str(escape_bytes(uuid.UUID(guid).bytes_le))


def match_keys(entry: Entry, with_dn: bool) -> set[tuple[str, str]]:
    """The keys under which a requested name finds ``entry`` (see :func:`name_key`)."""
    keys = {("dn", normalize_dn(entry["dn"]))} if with_dn else set()
    for attr in ("sAMAccountName", "userPrincipalName"):
        text = _text(entry, attr)
        if text:
            keys.add(("name", text.casefold()))
    sam = _text(entry, "sAMAccountName")
    if sam:
        keys.add(("sam", sam.casefold()))
    sid, guid = first(entry, "objectSid"), first(entry, "objectGUID")
    if sid:
        keys.add(("sid", sid_to_str(sid).upper()))
    if guid:
        keys.add(("guid", str(uuid.UUID(bytes_le=guid))))
    return keys


def name_key(value: str) -> tuple[str, str]:
    """How a requested name is looked up among entries: its normalised DN, SID, GUID or case-folded name."""
    return _terms(value)[1]
