"""Reading a batch of lab accounts straight from the Samba DC, for the engine's crash tests (issue 12).

What a crash test must prove on the DC itself: each account's ``userAccountControl`` and ``logonHours`` (the
state an undo must restore exactly), and *how many times* each was written. The count comes from the DC's own
replication metadata: ``replPropertyMetaData`` holds, per attribute, a ``version`` that every originating
write of that attribute increments ([MS-DRSR] 5.132 ``PROPERTY_META_DATA_EXT``, 5.165
``REPLPROPERTYMETADATABLOB``; [MS-ADTS] 3.1.1.1.9 "Replication metadata"). Measured on this Samba: a
compare-and-swap of userAccountControl (delete old, add new) moves it by 3, a logonHours replace by 2 from
absent and 1 otherwise, and a modify that leaves the value as it was moves nothing. So :func:`calibrate` makes
the connector's own writes on spare accounts first, and "applied exactly once" is a version that moved by
exactly what one such write moves it — a disable undone and re-done, or a wipe re-sent after a restore, shows.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from agent.lab.samba import SambaDC

__all__ = ["HOURS", "UAC", "Account", "Writes", "accounts", "calibrate", "create_accounts", "reset_accounts"]

UAC = 0x00090008    # attributeID of userAccountControl (1.2.840.113556.1.4.8, [MS-ADA3])
HOURS = 0x00090040  # attributeID of logonHours (1.2.840.113556.1.4.64, [MS-ADA1] "Logon-Hours")
_ENTRY = struct.Struct("<IIQ16sqq")  # attid, version, originating time, invocation id, originating usn, local usn


@dataclass(frozen=True)
class Account:
    """One account as the DC has it now."""

    uac: int
    hours: bytes | None  # None: no logonHours attribute (every hour allowed)
    versions: dict[int, int]  # attributeID -> how many originating writes it has had
    groups: frozenset[str] = frozenset()  # memberOf: DNs of the groups it is a direct member of

    @property
    def state(self) -> tuple[int, bytes | None, frozenset[str]]:
        """What an undo must bring back exactly."""
        return self.uac, self.hours, self.groups

    def version(self, attid: int) -> int:
        return self.versions.get(attid, 0)


def _versions(blob: bytes) -> dict[int, int]:
    """Per-attribute versions from a ``replPropertyMetaDataBlob`` (version 1: a header, then 48-byte entries)."""
    version, _reserved, count, _reserved2 = struct.unpack_from("<IIII", blob, 0)
    if version != 1:
        raise ValueError(f"replPropertyMetaData version {version}")
    out = {}
    for i in range(count):
        attid, ver, *_ = _ENTRY.unpack_from(blob, 16 + i * _ENTRY.size)
        out[attid] = ver
    return out


def accounts(dc: SambaDC, prefix: str) -> dict[str, Account]:
    """Every user whose sAMAccountName starts with ``prefix`` (one search, as Administrator)."""
    from ldap3.utils.conv import escape_filter_chars

    conn = dc.admin_connection()
    conn.search(dc.base_dn, f"(&(objectClass=user)(sAMAccountName={escape_filter_chars(prefix)}*))",
                attributes=["sAMAccountName", "userAccountControl", "logonHours", "replPropertyMetaData", "memberOf"])
    out = {}
    for entry in conn.response or []:
        if entry.get("type") != "searchResEntry":
            continue
        raw = entry["raw_attributes"]
        hours = raw.get("logonHours") or []
        out[raw["sAMAccountName"][0].decode()] = Account(
            int(raw["userAccountControl"][0]), bytes(hours[0]) if hours else None,
            _versions(bytes(raw["replPropertyMetaData"][0])),
            frozenset(bytes(g).decode().lower() for g in raw.get("memberOf") or []))
    return out


def create_accounts(dc: SambaDC, names: list[str]) -> None:
    """Enabled users, a few with states an undo must bring back exactly: logon hours of their own (every
    tenth), a non-default userAccountControl (DONT_EXPIRE_PASSWORD, every seventh)."""
    for i, name in enumerate(names):
        attrs: dict[str, object] = {}
        if i % 10 == 0:
            attrs["logonHours"] = bytes([0xFF] * 20 + [0x0F])
        if i % 7 == 3:
            attrs["userAccountControl"] = 0x10200
        dc.create_user(name, f"Pw-{name}-9a!", **attrs)


@dataclass(frozen=True)
class Writes:
    """How far one change and its undo move each attribute's version, for an account with (or without) logon
    hours of its own — measured by making the connector's exact modifies on spare accounts."""

    uac_change: int
    uac_both: int
    hours_change: dict[bool, int]  # key: the account had logonHours of its own
    hours_both: dict[bool, int]

    def expect(self, before: Account, *, undone: bool) -> tuple[int, int]:
        """(userAccountControl, logonHours) version deltas of an account changed once (and undone once)."""
        own = before.hours is not None
        if undone:
            return self.uac_both, self.hours_both[own]
        return self.uac_change, self.hours_change[own]


def calibrate(dc: SambaDC, prefix: str) -> Writes:
    """Make, as Administrator, the modifies the connector makes (connectors/active_directory/uac.py cas(),
    disable.py apply_sessions/undo_sessions) on two spare accounts, and measure the version steps."""
    import ldap3

    conn = dc.admin_connection()
    names = [f"{prefix}x0", f"{prefix}x1"]
    create_accounts(dc, names)  # x0 has logon hours of its own (i % 10 == 0), x1 has none
    start = accounts(dc, prefix)
    hours_change, hours_both, uac_change, uac_both = {}, {}, 0, 0
    for name in names:
        dn, before = dc.dn_of(name), start[name]
        conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_DELETE, [str(before.uac)]),
                                                (ldap3.MODIFY_ADD, [str(before.uac | 2)])]})
        conn.modify(dn, {"logonHours": [(ldap3.MODIFY_REPLACE, [bytes(21)])]})
        mid = accounts(dc, prefix)[name]
        conn.modify(dn, {"logonHours": [(ldap3.MODIFY_REPLACE, [before.hours] if before.hours else [])]})
        conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_DELETE, [str(before.uac | 2)]),
                                                (ldap3.MODIFY_ADD, [str(before.uac)])]})
        end = accounts(dc, prefix)[name]
        assert (end.uac, end.hours) == (before.uac, before.hours)
        own = before.hours is not None
        uac_change, uac_both = mid.version(UAC) - before.version(UAC), end.version(UAC) - before.version(UAC)
        hours_change[own] = mid.version(HOURS) - before.version(HOURS)
        hours_both[own] = end.version(HOURS) - before.version(HOURS)
    return Writes(uac_change, uac_both, hours_change, hours_both)


def reset_accounts(dc: SambaDC, prefix: str, baseline: dict[str, tuple[int, bytes | None, frozenset[str]]]
                   ) -> None:
    """Put back, as Administrator, any account not at its baseline (userAccountControl, logonHours, group
    memberships): the cases of a module share one set of accounts, and a failed case must not decide the next."""
    import ldap3

    conn = dc.admin_connection()
    for name, account in accounts(dc, prefix).items():
        uac, hours, groups = baseline[name]
        if (account.uac, account.hours) != (uac, hours):
            conn.modify(dc.dn_of(name), {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(uac)])],
                                         "logonHours": [(ldap3.MODIFY_REPLACE, [hours] if hours else [])]})
        for group in groups - account.groups:
            conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [dc.dn_of(name)])]})
        for group in account.groups - groups:
            conn.modify(group, {"member": [(ldap3.MODIFY_DELETE, [dc.dn_of(name)])]})
