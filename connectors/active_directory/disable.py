"""``disable_account`` and ``expire_sessions``: one attribute each, snapshotted and restored exactly.

disable_account sets ACCOUNTDISABLE (``userAccountControl |= 0x2``). Undo writes back the exact value the snapshot
recorded (so DONT_EXPIRE_PASSWORD, PASSWD_NOTREQD ... come back as they were, and an account that was already
disabled stays disabled). Effect (measured on Samba): the user's own bind fails with ``data 533``. Both writes are
compare-and-swaps (:mod:`.uac`): apply sends one modify and reads only if the value changed since the snapshot.
With ``args["accounts"]`` (a list) every hook hands over to :mod:`.batch`.

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

from connectors.active_directory import batch
from connectors.active_directory.accounts import Account, first, resolve, resolve_snapshot
from connectors.active_directory.session import ADSession
from connectors.active_directory.uac import (
    ACCOUNTDISABLE,
    CAS_MISMATCH,
    TICKETS_NOTE,
    cas,
    name_of,
    settle_disable,
    settle_restore,
    uac_of,
)
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

NO_LOGON_HOURS = bytes(21)


def snapshot_disable(session: ADSession, args: Mapping[str, Any]) -> Snapshot:
    if "accounts" in args:
        return batch.snapshot_batch(session, args)
    account = resolve(session, args["account"], ["userAccountControl"])
    return Snapshot({"account": account.identity(), "userAccountControl": uac_of(account)})


def apply_disable(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    """One compare-and-swap from the snapshot's value; only if it does not match, read again and decide."""
    if "accounts" in args:
        return batch.apply_batch(session, args, snap)
    data = snap.data if snap.data.get("account") else snapshot_disable(session, args).data
    identity, recorded = data["account"], int(data["userAccountControl"])
    details: dict[str, Any] = {"account": identity, "userAccountControl_before": recorded}
    if recorded & ACCOUNTDISABLE:
        return ActionResult(False, f"{name_of(identity)} is already disabled", details, [TICKETS_NOTE])
    after = recorded | ACCOUNTDISABLE
    if session.modify(identity["dn"], cas(recorded, after), ok_codes=CAS_MISMATCH) == 0:
        details["userAccountControl_after"] = after
        return ActionResult(True, f"disabled {name_of(identity)} (userAccountControl {recorded:#x} -> {after:#x})",
                            details, [TICKETS_NOTE])
    settled = settle_disable(session, identity, recorded)
    details.update(account=settled.account.identity(), userAccountControl_before=settled.before)
    warnings = [TICKETS_NOTE, *([settled.warning] if settled.warning else [])]
    if not settled.changed:
        return ActionResult(False, f"{settled.account.sam} is already disabled", details, warnings)
    details["userAccountControl_after"] = settled.after
    return ActionResult(True, f"disabled {settled.account.sam} (userAccountControl {settled.before:#x} -> "
                              f"{settled.after:#x})", details, warnings)


def verify_disable(session: ADSession, args: Mapping[str, Any]) -> Verification:
    if "accounts" in args:
        return batch.verify_batch(session, args)
    account = resolve(session, args["account"], ["userAccountControl"])
    uac = uac_of(account)
    disabled = bool(uac & ACCOUNTDISABLE)
    return Verification(disabled, f"{account.sam} is {'disabled' if disabled else 'enabled'} "
                        f"(userAccountControl {uac:#x})", {"dn": account.dn, "userAccountControl": uac})


def undo_disable(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    """Read the account (an undo may come days later, and must say whether it changed anything), then CAS back."""
    if "accounts" in snap.data:
        return batch.undo_batch(session, args, snap)
    old = int(snap.data["userAccountControl"])
    settled = settle_restore(session, snap.data["account"], old)
    details = {"account": settled.account.identity(), "userAccountControl_before": settled.before,
               "userAccountControl_after": old}
    if not settled.changed:
        return ActionResult(False, f"{settled.account.sam} already has userAccountControl {old:#x}", details)
    return ActionResult(True, f"restored {settled.account.sam} userAccountControl {settled.before:#x} -> {old:#x}",
                        details, [settled.warning] if settled.warning else [])


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
