"""``disable_account`` and ``expire_sessions``: one attribute each, snapshotted and restored exactly.

disable_account sets ACCOUNTDISABLE (``userAccountControl |= 0x2``). Undo writes back the exact value the snapshot
recorded (so DONT_EXPIRE_PASSWORD, PASSWD_NOTREQD ... come back as they were, and an account that was already
disabled stays disabled). Effect (measured on Samba): the user's own bind fails with ``data 533``.

expire_sessions sets ``logonHours`` to 21 zero bytes (no hour of the week allowed): new interactive, network and
LDAP logons fail (``data 530``). Undo restores the old value, or removes the attribute if there was none. What it
cannot do: Kerberos tickets already issued stay valid until they expire (10 h by default) and open Windows/SSH
sessions continue — the result says so and lists ``host_followups`` for the engine to chain (kill_sessions).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import ldap3

from connectors.active_directory.accounts import Account, as_int, first, resolve, resolve_snapshot
from connectors.active_directory.session import ADSession
from connectors.types import ActionResult, Snapshot, Verification

__all__ = [
    "ACCOUNTDISABLE",
    "NO_LOGON_HOURS",
    "TICKETS_NOTE",
    "apply_disable",
    "apply_sessions",
    "snapshot_disable",
    "snapshot_sessions",
    "undo_disable",
    "undo_sessions",
    "verify_disable",
    "verify_sessions",
]

ACCOUNTDISABLE = 0x2
NO_LOGON_HOURS = bytes(21)
TICKETS_NOTE = ("Kerberos tickets already issued stay valid until they expire (10 h by default) and existing "
                "sessions on hosts continue: end them on the hosts (WinRM/SSH kill_sessions) as well.")


def _uac(account: Account) -> int:
    return as_int(account.entry, "userAccountControl") or 0


def snapshot_disable(session: ADSession, args: Mapping[str, Any]) -> Snapshot:
    account = resolve(session, args["account"], ["userAccountControl"])
    return Snapshot({"account": account.identity(), "userAccountControl": _uac(account)})


def apply_disable(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    account = resolve(session, args["account"], ["userAccountControl"])
    before = _uac(account)
    details: dict[str, Any] = {"account": account.identity(), "userAccountControl_before": before}
    if before & ACCOUNTDISABLE:
        return ActionResult(False, f"{account.sam} is already disabled", details, [TICKETS_NOTE])
    after = before | ACCOUNTDISABLE
    session.modify(account.dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(after)])]})
    details["userAccountControl_after"] = after
    return ActionResult(True, f"disabled {account.sam} (userAccountControl {before:#x} -> {after:#x})", details,
                        [TICKETS_NOTE])


def verify_disable(session: ADSession, args: Mapping[str, Any]) -> Verification:
    account = resolve(session, args["account"], ["userAccountControl"])
    uac = _uac(account)
    disabled = bool(uac & ACCOUNTDISABLE)
    return Verification(disabled, f"{account.sam} is {'disabled' if disabled else 'enabled'} "
                        f"(userAccountControl {uac:#x})", {"dn": account.dn, "userAccountControl": uac})


def undo_disable(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    old = int(snap.data["userAccountControl"])
    account = resolve_snapshot(session, snap.data["account"], ["userAccountControl"])
    current = _uac(account)
    details = {"account": account.identity(), "userAccountControl_before": current, "userAccountControl_after": old}
    if current == old:
        return ActionResult(False, f"{account.sam} already has userAccountControl {old:#x}", details)
    warnings = []
    if current != old | ACCOUNTDISABLE:
        warnings.append(f"userAccountControl changed since the snapshot ({current:#x}, expected {old | 2:#x}); "
                        f"restored the recorded value {old:#x}")
    session.modify(account.dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(old)])]})
    return ActionResult(True, f"restored {account.sam} userAccountControl {current:#x} -> {old:#x}", details,
                        warnings)


def _hours(account: Account) -> bytes | None:
    return first(account.entry, "logonHours")


def _b64(value: bytes | None) -> str | None:
    return base64.b64encode(value).decode() if value is not None else None


def _followups(account: Account) -> list[dict[str, str]]:
    return [{"action": "kill_sessions", "user": account.sam, "userPrincipalName": account.upn,
             "reason": "LDAP cannot revoke issued Kerberos tickets or end open sessions"}]


def snapshot_sessions(session: ADSession, args: Mapping[str, Any]) -> Snapshot:
    account = resolve(session, args["account"], ["logonHours"])
    return Snapshot({"account": account.identity(), "logonHours": _b64(_hours(account))})


def apply_sessions(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    account = resolve(session, args["account"], ["logonHours"])
    details: dict[str, Any] = {"account": account.identity(), "logonHours_before": _b64(_hours(account)),
                               "host_followups": _followups(account), "limitations": TICKETS_NOTE}
    if _hours(account) == NO_LOGON_HOURS:
        return ActionResult(False, f"{account.sam} already has no permitted logon hours", details, [TICKETS_NOTE])
    session.modify(account.dn, {"logonHours": [(ldap3.MODIFY_REPLACE, [NO_LOGON_HOURS])]})
    return ActionResult(True, f"{account.sam}: logonHours set to none — new logons are refused", details,
                        [TICKETS_NOTE])


def verify_sessions(session: ADSession, args: Mapping[str, Any]) -> Verification:
    account = resolve(session, args["account"], ["logonHours"])
    blocked = _hours(account) == NO_LOGON_HOURS
    return Verification(blocked, f"{account.sam}: logon hours {'none' if blocked else 'allowed'}",
                        {"dn": account.dn, "logonHours": _b64(_hours(account))})


def undo_sessions(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    raw = snap.data.get("logonHours")
    old = base64.b64decode(raw) if raw is not None else None
    account = resolve_snapshot(session, snap.data["account"], ["logonHours"])
    current = _hours(account)
    details = {"account": account.identity(), "logonHours_before": _b64(current), "logonHours_after": raw}
    if current == old:
        return ActionResult(False, f"{account.sam}: logonHours already as recorded", details)
    session.modify(account.dn, {"logonHours": [(ldap3.MODIFY_REPLACE, [old] if old is not None else [])]})
    return ActionResult(True, f"{account.sam}: logonHours restored", details)
