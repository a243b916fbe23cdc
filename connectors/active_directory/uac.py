"""userAccountControl by compare-and-swap: the one place that decides what a disable or a restore did.

A modify carrying ``delete: userAccountControl <old>`` + ``add: userAccountControl <new>`` is atomic: if the stored
value is not ``old`` the delete fails (``noSuchAttribute``, 16) and nothing changes. So apply and undo need no
read before their write: they swap from the value the snapshot recorded, and only when that fails do they read
the account again and decide (:func:`settle_disable`, :func:`settle_restore`). Measured on Samba 4.17: a swap
from a stale value fails with 16 as it should, *except* when the new value is already the stored one — then
Samba's samldb module drops the change and answers success without writing (uSNChanged does not move). The
decisions below treat that case ("already at the value this action sets") the same way on both servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ldap3

from connectors.active_directory.accounts import Account, as_int, resolve_snapshot
from connectors.active_directory.session import ADSession
from connectors.errors import Rejected

__all__ = [
    "ACCOUNTDISABLE",
    "CAS_ATTEMPTS",
    "CAS_MISMATCH",
    "TICKETS_NOTE",
    "Settled",
    "cas",
    "cas_changes",
    "name_of",
    "settle_disable",
    "settle_restore",
    "uac_of",
]

ACCOUNTDISABLE = 0x2
CAS_MISMATCH = (16, 20, 32)  # noSuchAttribute (not the expected value), attributeOrValueExists, noSuchObject (moved)
CAS_ATTEMPTS = 3
TICKETS_NOTE = ("Kerberos tickets already issued stay valid until they expire (10 h by default) and existing "
                "sessions on hosts continue: end them on the hosts (WinRM/SSH kill_sessions) as well. In a hybrid "
                "domain, Entra ID / Microsoft 365 sessions and refresh tokens stay valid until the next sync and "
                "the token lifetime: revoke them with Graph revokeSignInSessions (docs/hybrid-identity.md).")


def uac_of(account: Account) -> int:
    return as_int(account.entry, "userAccountControl") or 0


def name_of(identity: Mapping[str, Any]) -> str:
    return str(identity.get("sAMAccountName") or identity.get("dn"))


def cas(old: int, new: int) -> dict[str, list[tuple[str, list[str]]]]:
    """One modify that sets ``new`` only if the value is still ``old`` (for :meth:`ADSession.modify`)."""
    return {"userAccountControl": [(ldap3.MODIFY_DELETE, [str(old)]), (ldap3.MODIFY_ADD, [str(new)])]}


def cas_changes(old: int, new: int) -> list[tuple[str, str, list[str]]]:
    """The same compare-and-swap as :func:`cas`, as a change list for :meth:`ADSession.modify_many`."""
    return [(ldap3.MODIFY_DELETE, "userAccountControl", [str(old)]),
            (ldap3.MODIFY_ADD, "userAccountControl", [str(new)])]


@dataclass
class Settled:
    """How one account ended after a compare-and-swap that did not match: re-read, decided, maybe swapped again."""

    account: Account
    changed: bool
    before: int
    after: int
    warning: str = ""


def settle_disable(session: ADSession, identity: Mapping[str, Any], recorded: int) -> Settled:
    """The CAS from ``recorded`` did not match (value changed, or the DN moved): read the account again, decide.

    Already disabled at exactly ``recorded | 0x2`` → ours (an earlier attempt of this action, e.g. an engine
    retry; on Samba a CAS onto the value already present succeeds anyway, so both servers report it alike).
    Disabled at another value → someone else did it: nothing sent. Enabled at another value → disable from that
    value (undo still restores ``recorded``). Raises Rejected if the account is gone or keeps changing.
    """
    for _attempt in range(CAS_ATTEMPTS):
        account = resolve_snapshot(session, dict(identity), ["userAccountControl"])
        current = uac_of(account)
        if current == recorded | ACCOUNTDISABLE:
            return Settled(account, True, recorded, current,
                           f"{account.sam}: userAccountControl was already {current:#x} (the value this action "
                           f"sets) when the change arrived: an earlier attempt of this action, or the same change "
                           f"made by someone else since the snapshot; undo restores {recorded:#x}")
        if current & ACCOUNTDISABLE:
            return Settled(account, False, current, current,
                           f"{account.sam}: userAccountControl changed since the snapshot ({recorded:#x} -> "
                           f"{current:#x}) and the account is already disabled: nothing sent")
        new = current | ACCOUNTDISABLE
        code = session.modify(account.dn, cas(current, new), ok_codes=CAS_MISMATCH)
        if code == 0:
            warning = "" if current == recorded else (
                f"{account.sam}: userAccountControl changed since the snapshot ({recorded:#x} -> {current:#x}); "
                f"disabled from the current value; undo restores the recorded {recorded:#x}")
            return Settled(account, True, current, new, warning)
    raise Rejected(f"userAccountControl of {name_of(identity)} kept changing while it was being disabled "
                   f"({CAS_ATTEMPTS} attempts); not disabled", detail={"reason": "concurrent_change"})


def settle_restore(session: ADSession, identity: Mapping[str, Any], recorded: int) -> Settled:
    """Read the account and swap its userAccountControl back to ``recorded`` (no-op when it already is)."""
    for _attempt in range(CAS_ATTEMPTS):
        account = resolve_snapshot(session, dict(identity), ["userAccountControl"])
        current = uac_of(account)
        if current == recorded:
            return Settled(account, False, current, current)
        warning = "" if current == recorded | ACCOUNTDISABLE else (
            f"userAccountControl changed since the snapshot ({current:#x}, expected {recorded | 2:#x}); "
            f"restored the recorded value {recorded:#x}")
        if session.modify(account.dn, cas(current, recorded), ok_codes=CAS_MISMATCH) == 0:
            return Settled(account, True, current, recorded, warning)
    raise Rejected(f"userAccountControl of {name_of(identity)} kept changing while it was being restored "
                   f"({CAS_ATTEMPTS} attempts); not restored", detail={"reason": "concurrent_change"})
