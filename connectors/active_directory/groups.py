"""``remove_privileged_groups``: cut every membership path from the user to a privileged group, restorably.

Privileged groups: the built-ins (found by SID: Domain Admins, Enterprise Admins, Schema Admins, Administrators,
Account Operators, Backup Operators) plus ``options.privileged_groups`` (names or DNs).

Decision (documented, tested): the user's *direct* membership is removed from every group that is privileged
**or transitively nested in a privileged group** — a direct membership in "Helpdesk", where Helpdesk ⊂ Domain
Admins, is a privileged path, so it is removed (and reported in ``details["paths"]``). The groups themselves are
never edited beyond the user's own ``member`` value; nested group-in-group memberships are left alone.
Transitive memberships are found with LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941). The primary group
(``primaryGroupID``) is not a ``member`` value: if it is privileged, verify reports it and says so.
Undo re-adds exactly the memberships the snapshot recorded as to be removed, and only those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ldap3
from ldap3.utils.conv import escape_filter_chars

from connectors.active_directory.accounts import Account, as_int, first, resolve, resolve_snapshot, sid_to_str
from connectors.active_directory.options import DEFAULT_PRIVILEGED_GROUPS, normalize_dn
from connectors.active_directory.session import ADSession, failpoint
from connectors.types import ActionResult, Snapshot, Verification

__all__ = [
    "IN_CHAIN",
    "apply_groups",
    "membership",
    "privileged_groups",
    "snapshot_groups",
    "undo_groups",
    "verify_groups",
]

IN_CHAIN = "1.2.840.113556.1.4.1941"
_ALREADY = (16, 20, 68)  # noSuchAttribute (not a member), attributeOrValueExists, entryAlreadyExists


def privileged_groups(session: ADSession) -> dict[str, str]:
    """DN → name of every configured privileged group that exists in the directory."""
    entries, _ = session.search(session.opts.base_dn, "(objectClass=domain)", ["objectSid"], scope=ldap3.BASE)
    domain_sid = sid_to_str(first(entries[0], "objectSid") or b"") if entries else ""
    sids = [sid if sid.startswith("S-") else domain_sid + sid for sid in DEFAULT_PRIVILEGED_GROUPS.values()]
    terms = [f"(objectSid={escape_filter_chars(s)})" for s in sids if s.startswith("S-1-")]
    for extra in session.opts.privileged_groups:
        if "=" in extra:
            terms.append(f"(distinguishedName={escape_filter_chars(extra)})")
        else:
            terms.append(f"(sAMAccountName={escape_filter_chars(extra)})")
    found, _ = session.search(session.opts.base_dn, f"(&(objectClass=group)(|{''.join(terms)}))",
                              ["sAMAccountName"])
    return {e["dn"]: (first(e, "sAMAccountName") or b"").decode() for e in found}


def membership(session: ADSession, account: Account) -> dict[str, Any]:
    """Direct groups, transitive groups, and which direct groups lead to which privileged groups."""
    privileged = privileged_groups(session)
    direct = [v.decode() for v in account.entry["attributes"].get("memberOf", [])]
    esc = escape_filter_chars(account.dn)
    chain, _ = session.search(session.opts.base_dn, f"(&(objectClass=group)(member:{IN_CHAIN}:={esc}))",
                              ["sAMAccountName"])
    paths: dict[str, list[str]] = {}
    for group_dn in direct:
        reached = [group_dn] if group_dn in privileged else []
        if privileged:
            ors = "".join(f"(distinguishedName={escape_filter_chars(p)})" for p in privileged)
            found, _ = session.search(session.opts.base_dn, f"(&(objectClass=group)(|{ors})"
                                      f"(member:{IN_CHAIN}:={escape_filter_chars(group_dn)}))", ["cn"])
            reached += [e["dn"] for e in found]
        if reached:
            paths[group_dn] = sorted({privileged.get(p, p) for p in reached})
    primary = as_int(account.entry, "primaryGroupID")
    return {"direct": sorted(direct), "transitive": sorted(e["dn"] for e in chain), "paths": paths,
            "privileged_groups": sorted(privileged.values()), "primaryGroupID": primary,
            "primary_group_privileged": primary in (512, 518, 519)}


_ATTRS = ["memberOf", "primaryGroupID"]


def snapshot_groups(session: ADSession, args: Mapping[str, Any]) -> Snapshot:
    account = resolve(session, args["account"], _ATTRS)
    info = membership(session, account)
    return Snapshot({"account": account.identity(), "to_remove": sorted(info["paths"]), **info})


def apply_groups(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    account = resolve(session, args["account"], _ATTRS)
    info = membership(session, account)
    removed = []
    for group_dn in sorted(info["paths"]):
        code = session.modify(group_dn, {"member": [(ldap3.MODIFY_DELETE, [account.dn])]}, ok_codes=_ALREADY)
        if code == 0:
            removed.append(group_dn)
            failpoint(f"ad-group-removed:{len(removed)}")
    details = {"account": account.identity(), "removed": removed, "paths": info["paths"],
               "transitive_before": info["transitive"]}
    warnings = []
    if info["primary_group_privileged"]:
        warnings.append(f"primary group is privileged (primaryGroupID={info['primaryGroupID']}); not changed")
    if not removed:
        return ActionResult(False, f"{account.sam} has no membership path to a privileged group", details, warnings)
    return ActionResult(True, f"{account.sam}: removed from {len(removed)} group(s) granting privilege", details,
                        warnings)


def verify_groups(session: ADSession, args: Mapping[str, Any]) -> Verification:
    """In effect when no direct membership leads to a privileged group and the primary group is not one."""
    account = resolve(session, args["account"], _ATTRS)
    info = membership(session, account)
    clean = not info["paths"] and not info["primary_group_privileged"]
    summary = (f"{account.sam} has no privileged group membership" if clean else
               f"{account.sam} still reaches privileged groups via {sorted(info['paths']) or 'its primary group'}")
    return Verification(clean, summary, {"dn": account.dn, **info})


def undo_groups(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    account = resolve_snapshot(session, snap.data["account"], _ATTRS)
    current = {normalize_dn(v.decode()) for v in account.entry["attributes"].get("memberOf", [])}
    restored = []
    for group_dn in snap.data.get("to_remove", []):
        if normalize_dn(group_dn) in current:
            continue
        code = session.modify(group_dn, {"member": [(ldap3.MODIFY_ADD, [account.dn])]}, ok_codes=_ALREADY)
        if code == 0:
            restored.append(group_dn)
            failpoint(f"ad-group-restored:{len(restored)}")
    details = {"account": account.identity(), "restored": restored}
    if not restored:
        return ActionResult(False, f"{account.sam}: recorded memberships already present", details)
    return ActionResult(True, f"{account.sam}: re-added to {len(restored)} group(s)", details)
