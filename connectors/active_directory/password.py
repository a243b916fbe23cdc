"""``reset_password``: a random password nobody sees, plus ``pwdLastSet = 0``. Not reversible, opt-in.

Why it is never a substitute for disabling: AD can keep accepting the *previous* password for NTLM during the "old
password allowed period" (60 min by default; LAB.md saw it for LDAP simple binds and SMB too, while a reset done
here followed by ``pwdLastSet=0`` made the old password's LDAP bind fail with ``data 52e``), and Kerberos tickets
already issued stay valid, so an attacker is not reliably locked out by a reset. The password is generated with
:mod:`secrets`, sent only over the TLS-protected connection as ``unicodePwd``, and never returned, journaled, logged
or put into an exception message; ldap3 does not echo modify values in errors, and any message is scrubbed anyway.
ldap3's own protocol logging (off by default) *does* print modify values — measured: the UTF-16 password appears
escaped in a ``PROTOCOL:MODIFY`` line — so a filter on the ``ldap3`` logger drops every record emitted while a
password is in flight in that thread, and any record naming a password attribute.
"""

from __future__ import annotations

import logging
import secrets
import string
import threading
from collections.abc import Mapping
from typing import Any

import ldap3

from connectors.active_directory.accounts import as_int, resolve
from connectors.active_directory.session import ADSession
from connectors.errors import ConnectorError
from connectors.types import ActionResult, Snapshot, Verification

__all__ = ["OLD_PASSWORD_NOTE", "SecretRecordFilter", "apply_reset", "generate_password", "install_log_filter",
           "snapshot_reset", "verify_reset"]

PASSWORD_LENGTH = 32
_CLASSES = (string.ascii_uppercase, string.ascii_lowercase, string.digits, "!#%+-.:=?@_~")
OLD_PASSWORD_NOTE = ("AD may keep accepting the previous password for NTLM for a while after a reset (old "
                     "password allowed period, 60 min by default) and issued Kerberos tickets stay valid: a reset "
                     "is not containment — the account must also be disabled.")


_in_flight = threading.local()
_PASSWORD_ATTRS = ("unicodepwd", "userpassword")


class SecretRecordFilter(logging.Filter):
    """Drops ldap3 log records that could carry a password (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_in_flight, "active", False):
            return False
        try:
            text = record.getMessage().lower()
        except (TypeError, ValueError):
            text = str(record.msg).lower()
        return not any(attr in text for attr in _PASSWORD_ATTRS)


def install_log_filter() -> None:
    """Attach :class:`SecretRecordFilter` to the ``ldap3`` logger once (idempotent)."""
    logger = logging.getLogger("ldap3")
    if not any(isinstance(f, SecretRecordFilter) for f in logger.filters):
        logger.addFilter(SecretRecordFilter())


install_log_filter()


def generate_password(avoid: str = "") -> str:
    """A random password with all four character classes that does not contain ``avoid`` (AD complexity rule)."""
    alphabet = "".join(_CLASSES)
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(PASSWORD_LENGTH))
        if all(any(c in cls for c in pw) for cls in _CLASSES) and not (
                len(avoid) >= 3 and avoid.lower() in pw.lower()):
            return pw


def snapshot_reset(session: ADSession, args: Mapping[str, Any]) -> Snapshot:
    """What can be recorded (not the password: AD never reveals it, and a reset cannot be undone)."""
    account = resolve(session, args["account"], ["pwdLastSet", "msDS-KeyVersionNumber"])
    return Snapshot({"account": account.identity(), "pwdLastSet": as_int(account.entry, "pwdLastSet"),
                     "msDS-KeyVersionNumber": as_int(account.entry, "msDS-KeyVersionNumber"),
                     "reversible": False})


def apply_reset(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    account = resolve(session, args["account"], ["pwdLastSet"])
    password = generate_password(avoid=account.sam)
    encoded = f'"{password}"'.encode("utf-16-le")
    _in_flight.active = True
    try:
        session.modify(account.dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [encoded])]})
    except ConnectorError as exc:
        exc.message = exc.message.replace(password, "***")
        exc.args = (exc.message,)
        raise exc from None
    finally:
        _in_flight.active = False
        del password, encoded
    session.modify(account.dn, {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0"])]})
    return ActionResult(True, f"{account.sam}: password reset to a random value nobody knows; must change at "
                              f"next logon", {"account": account.identity(), "pwdLastSet": 0,
                                              "reversible": False, "note": OLD_PASSWORD_NOTE}, [OLD_PASSWORD_NOTE])


def verify_reset(session: ADSession, args: Mapping[str, Any]) -> Verification:
    """In effect while ``pwdLastSet`` is 0 (the new password was set and must be changed before use)."""
    account = resolve(session, args["account"], ["pwdLastSet", "msDS-KeyVersionNumber"])
    last = as_int(account.entry, "pwdLastSet")
    return Verification(last == 0, f"{account.sam}: pwdLastSet={last}",
                        {"dn": account.dn, "pwdLastSet": last,
                         "msDS-KeyVersionNumber": as_int(account.entry, "msDS-KeyVersionNumber")})
