"""``capture_evidence``: the account as it is *before* anyone changes it, as a JSON evidence file.

Non-mutating. The engine stores ``details["evidence"]`` files with SHA-256 hashes; the counsel report cites them.
FILETIME values (100 ns since 1601) are also given as ISO-8601 UTC so a reader does not need to convert them.
No secret attribute is readable over LDAP, and none is requested.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from connectors.active_directory.accounts import resolve
from connectors.active_directory.groups import membership
from connectors.active_directory.session import ADSession
from connectors.types import ActionResult, Snapshot, Verification

__all__ = ["EVIDENCE_ATTRS", "apply_evidence", "decode_uac", "undo_evidence", "verify_evidence"]

EVIDENCE_ATTRS = ("sAMAccountName", "userPrincipalName", "distinguishedName", "displayName", "description",
                  "userAccountControl", "memberOf", "primaryGroupID", "lastLogonTimestamp", "lastLogon",
                  "pwdLastSet", "accountExpires", "badPwdCount", "badPasswordTime", "lockoutTime", "logonCount",
                  "logonHours", "whenCreated", "whenChanged", "uSNChanged", "adminCount", "servicePrincipalName",
                  "msDS-KeyVersionNumber", "objectGUID", "objectSid")
_FILETIME = {"lastLogonTimestamp", "lastLogon", "pwdLastSet", "accountExpires", "badPasswordTime", "lockoutTime"}
_UAC_FLAGS = {0x2: "ACCOUNTDISABLE", 0x10: "LOCKOUT", 0x20: "PASSWD_NOTREQD", 0x200: "NORMAL_ACCOUNT",
              0x10000: "DONT_EXPIRE_PASSWORD", 0x40000: "SMARTCARD_REQUIRED", 0x80000: "TRUSTED_FOR_DELEGATION",
              0x100000: "NOT_DELEGATED", 0x400000: "DONT_REQ_PREAUTH", 0x800000: "PASSWORD_EXPIRED"}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def decode_uac(value: int) -> list[str]:
    return [name for bit, name in sorted(_UAC_FLAGS.items()) if value & bit]


def _filetime(value: int) -> str | None:
    if value in (0, 0x7FFFFFFFFFFFFFFF) or value < 0:
        return None
    return (dt.datetime(1601, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=value // 10)).isoformat()


def _value(attr: str, raw: bytes) -> Any:
    if attr == "logonHours":
        return raw.hex()
    if attr in ("objectGUID", "objectSid"):
        return base64.b64encode(raw).decode()
    return raw.decode("utf-8", errors="replace")


def apply_evidence(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    account = resolve(session, args["account"], EVIDENCE_ATTRS)
    attrs: dict[str, Any] = {}
    for name in EVIDENCE_ATTRS:
        values = account.entry["attributes"].get(name) or []
        decoded = [_value(name, v) for v in values]
        attrs[name] = decoded if name in ("memberOf", "servicePrincipalName") else (decoded[0] if decoded else None)
    derived: dict[str, Any] = {"objectGUID": account.guid, "objectSid": account.sid}
    if attrs["userAccountControl"] is not None:
        derived["userAccountControl_flags"] = decode_uac(int(attrs["userAccountControl"]))
    for name in _FILETIME:
        if attrs.get(name) is not None:
            derived[name + "_utc"] = _filetime(int(attrs[name]))
    groups = membership(session, account)
    record = {"captured_at": dt.datetime.now(dt.UTC).isoformat(), "directory": session.opts.address,
              "base_dn": session.opts.base_dn, "account": account.identity(), "attributes": attrs,
              "derived": derived, "groups": groups}
    filename = f"account_{_SAFE_NAME.sub('_', account.sam) or 'unknown'}.json"
    text = json.dumps(record, indent=2, sort_keys=True)
    return ActionResult(False, f"captured {len(attrs)} attributes of {account.sam}",
                        {"account": account.identity(), "evidence": {filename: text}})


def verify_evidence(session: ADSession, args: Mapping[str, Any]) -> Verification:
    account = resolve(session, args["account"])
    return Verification(True, f"{account.sam} exists; evidence capture needs no verification", {"dn": account.dn})


def undo_evidence(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    return ActionResult(False, "capture_evidence changes nothing; nothing to undo")
