"""``disable_account`` on many accounts in one action: ``args["accounts"] = [name, ...]`` instead of ``account``.

After a password spray the responder disables dozens of accounts on one directory. One action does it with a
handful of round trips instead of a handful per account:

- **snapshot**: one search per 200 names (an OR filter of ``escape_filter_chars`` values, paged) records every
  account's identity and exact ``userAccountControl``. Names that find nothing, find several accounts, name a
  protected account, or name an account an earlier name already named are recorded as such and never touched
  — protected ones are refused here, before any modify of the batch is sent.
- **apply**: one compare-and-swap modify per enabled account (:mod:`.uac`), all pipelined on the one pooled
  connection. A swap that does not match is settled for that account alone (re-read, decide).
- **verify**: one search; in effect when every account that resolves (and is not protected) is disabled. An
  account the server would not let the agent change (it lacks the right to write ``userAccountControl``, read
  from ``allowedAttributesEffective``) is reported and does not count — it was reported by apply too, and the
  others must stay undoable.
- **undo**: one search (found by objectGUID; by the recorded DN if renamed), then one swap per account this
  action disabled, back to its exact recorded value. Accounts that were already disabled are left alone.

Per-account outcomes are in ``details["accounts"]`` (``requested``, ``outcome``, identity, values before/after,
``error``), counted in ``details["counts"]`` and named in the summary and warnings. Outcomes: ``disabled``,
``already_disabled``, ``restored``, ``already_restored``, ``left_disabled``, ``not_found``, ``ambiguous``,
``protected_account``, ``duplicate``, ``failed``. Only a broken connection or a busy server raises (the engine
retries the whole action; the swaps make that safe); if nothing at all could be changed the action fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from connectors.active_directory.accounts import (
    IDENTITY_ATTRS,
    USER_FILTER,
    Account,
    check_by_name,
    guid_value,
    looks_like_dn,
    match_keys,
    name_filter,
    name_key,
    validate_account,
)
from connectors.active_directory.batch_resolve import NAMES_PER_FILTER, resolve_many
from connectors.active_directory.errors import from_result
from connectors.active_directory.options import DirectoryOptions
from connectors.active_directory.session import ADSession, Entry
from connectors.active_directory.uac import (
    ACCOUNTDISABLE,
    CAS_MISMATCH,
    TICKETS_NOTE,
    cas_changes,
    settle_disable,
    settle_restore,
    uac_of,
)
from connectors.errors import InvalidInput, Rejected, Unreachable
from connectors.types import ActionResult, Snapshot, Verification

__all__ = ["MAX_ACCOUNTS", "apply_batch", "snapshot_batch", "undo_batch", "validate_accounts", "verify_batch"]

MAX_ACCOUNTS = 5000
_ATTRS = ["userAccountControl"]
_TRANSIENT = (51, 52)  # busy, unavailable
_SHOWN = 5  # problem accounts named in a summary line


def validate_accounts(value: Any, opts: DirectoryOptions) -> list[str]:
    """The validated list; InvalidInput naming every bad or protected entry (nothing is connected yet)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidInput(f"accounts must be a non-empty list of account names, got {value!r}")
    if len(value) > MAX_ACCOUNTS:
        raise InvalidInput(f"accounts lists {len(value)} names (max {MAX_ACCOUNTS} per action)")
    names = [validate_account(v, opts, f"accounts[{i}]") for i, v in enumerate(value)]
    protected = []
    for i, name in enumerate(names):
        try:
            check_by_name(name, opts, f"accounts[{i}]")
        except InvalidInput:
            protected.append(name)
    if protected:
        raise InvalidInput(f"accounts lists protected account(s) that are never changed: "
                           f"{', '.join(repr(p) for p in protected)} — remove them and run again",
                           detail={"reason": "protected_account", "accounts": protected})
    return names


def _identity_of(item: Mapping[str, Any]) -> dict[str, Any]:
    return dict(item.get("account") or {})


def snapshot_batch(session: ADSession, args: Mapping[str, Any]) -> Snapshot:
    """Every requested name: its account and exact userAccountControl, or why it will not be touched."""
    names = list(args["accounts"])
    items: list[dict[str, Any]] = []
    for res in resolve_many(session, names, _ATTRS):
        if res.account is not None and not res.problem:
            items.append({"requested": res.requested, "status": "ok", "account": res.account.identity(),
                          "userAccountControl": uac_of(res.account)})
        else:
            items.append({"requested": res.requested, "status": res.problem, "error": res.message,
                          **({"matches": res.matches} if res.matches else {})})
    if not any(i["status"] == "ok" for i in items):
        raise Rejected(f"none of the {len(names)} accounts can be disabled: " + _problems(items),
                       detail={"reason": "no_account", "accounts": items})
    return Snapshot({"accounts": items})


def _problems(items: Sequence[Mapping[str, Any]], key: str = "status") -> str:
    bad = [i for i in items if i.get(key) not in ("ok", "disabled", "already_disabled", "restored",
                                                  "already_restored", "left_disabled")]
    shown = "; ".join(f"{i['requested']}: {i.get('error') or i.get(key)}" for i in bad[:_SHOWN])
    return shown + (f"; and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else "")


def _outcome(item: Mapping[str, Any], outcome: str, **extra: Any) -> dict[str, Any]:
    out = {"requested": item["requested"], "outcome": outcome}
    if item.get("account"):
        out["account"] = _identity_of(item)
    out.update(extra)
    return out


def _swap_all(session: ADSession, todo: list[tuple[dict[str, Any], int, int]],
              settle: Any, verb: str) -> list[dict[str, Any]]:
    """Pipelined swaps ``(item, old, new)``; mismatches settled one by one; per-account outcome dicts."""
    results = session.modify_many([(item["account"]["dn"], cas_changes(old, new)) for item, old, new in todo])
    outcomes: list[dict[str, Any]] = []
    busy = []
    for (item, old, new), res in zip(todo, results, strict=True):
        code = int(res.get("result", -1))
        if code == 0:
            outcomes.append(_outcome(item, verb, userAccountControl_before=old, userAccountControl_after=new))
        elif code in CAS_MISMATCH:
            outcomes.append(_settled(session, item, settle, verb))
        elif code in _TRANSIENT:
            busy.append(item["requested"])
            outcomes.append(_outcome(item, "failed", error=from_result(res, "modify").message))
        else:
            error = from_result(res, f"modify {item['account']['dn']!r} (userAccountControl)")
            outcomes.append(_outcome(item, "failed", error=error.message, ldap_result=code))
    if busy:
        raise Unreachable(f"the DC was busy or unavailable for {len(busy)} of {len(todo)} accounts "
                          f"({', '.join(busy[:_SHOWN])}); the action can be retried safely",
                          detail={"accounts": outcomes})
    return outcomes


def _settled(session: ADSession, item: dict[str, Any], settle: Any, verb: str) -> dict[str, Any]:
    recorded = int(item["userAccountControl"])
    try:
        done = settle(session, item["account"], recorded)
    except Rejected as exc:
        return _outcome(item, "failed", error=exc.message)
    outcome = verb if done.changed else ("already_disabled" if verb == "disabled" else "already_restored")
    extra = {"warning": done.warning} if done.warning else {}
    return {**_outcome(item, outcome, userAccountControl_before=done.before, userAccountControl_after=done.after),
            "account": done.account.identity(), **extra}


def apply_batch(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    data = snap.data if "accounts" in snap.data else snapshot_batch(session, args).data
    outcomes: list[dict[str, Any] | None] = []
    todo: list[tuple[dict[str, Any], int, int]] = []
    slots: list[int] = []
    for item in data["accounts"]:
        if item["status"] != "ok":
            outcomes.append(_outcome(item, item["status"], error=item.get("error", "")))
            continue
        recorded = int(item["userAccountControl"])
        if recorded & ACCOUNTDISABLE:
            outcomes.append(_outcome(item, "already_disabled", userAccountControl_before=recorded))
            continue
        slots.append(len(outcomes))
        outcomes.append(None)
        todo.append((item, recorded, recorded | ACCOUNTDISABLE))
    for slot, outcome in zip(slots, _swap_all(session, todo, settle_disable, "disabled") if todo else [],
                             strict=True):
        outcomes[slot] = outcome
    final = [o for o in outcomes if o is not None]
    counts = _count(final)
    details = {"accounts": final, "counts": counts}
    if not counts.get("disabled") and counts.get("failed"):
        first = next(o for o in final if o["outcome"] == "failed")
        raise Rejected(f"no account was disabled: {first['requested']}: {first['error']}", detail=details)
    warnings = [TICKETS_NOTE, *_warnings(final)]
    return ActionResult(bool(counts.get("disabled")), _summary("disabled", final, counts), details, warnings)


def _count(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
    return counts


def _summary(verb: str, outcomes: Sequence[Mapping[str, Any]], counts: Mapping[str, int]) -> str:
    done = counts.get(verb, 0)
    text = f"{verb} {done} of {len(outcomes)} accounts"
    others = [f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items()) if k != verb]
    if others:
        text += f" ({', '.join(others)})"
    bad = [o for o in outcomes if o["outcome"] in ("failed", "not_found", "ambiguous", "protected_account",
                                                   "duplicate")]
    if bad:
        text += "; not changed: " + ", ".join(f"{o['requested']} ({o['outcome'].replace('_', ' ')})"
                                              for o in bad[:_SHOWN])
        text += f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return text


def _warnings(outcomes: Sequence[Mapping[str, Any]]) -> list[str]:
    out = []
    for o in outcomes:
        if o.get("warning"):
            out.append(str(o["warning"]))
        if o.get("error"):
            out.append(f"{o['requested']}: {o['outcome'].replace('_', ' ')}: {o['error']}")
    return out


ENABLED = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"  # ACCOUNTDISABLE not set (bitwise AND rule)
_SEEN = 5  # enabled accounts a verify fetches at most: enough to name them and decide
_NAMES = ["sAMAccountName", "userPrincipalName"]


def verify_batch(session: ADSession, args: Mapping[str, Any]) -> Verification:
    """In effect when no account the names resolve to — unprotected, unambiguous, changeable — is enabled.

    One search asks the DC for the *enabled* accounts among the names (normally none after apply: nothing to
    fetch). Enabled ones it returns are resolved again by name, so that an ambiguous name or a protected
    account (never touched) does not count, nor one the agent may not change (allowedAttributesEffective).
    """
    names = list(args["accounts"])
    filters = [name_filter(names[i:i + NAMES_PER_FILTER], ENABLED) for i in range(0, len(names), NAMES_PER_FILTER)]
    entries, truncated = session.search_many(session.opts.base_dn, filters, _NAMES, page_size=_SEEN,
                                             first_page_only=True)
    enabled, excluded = _in_scope_enabled(session, names, entries)
    if truncated and not enabled:  # the first few were all out of scope: look at every enabled one
        entries, truncated = session.search_many(session.opts.base_dn, filters, _NAMES)
        enabled, excluded = _in_scope_enabled(session, names, entries)
    unchangeable = _unchangeable(session, [a for _, a in enabled])
    still = [(name, a) for name, a in enabled if a.dn not in unchangeable]
    observed: dict[str, Any] = {
        "names": len(names), "search": "enabled accounts among the names",
        "enabled": [{"requested": name, "dn": a.dn, "userAccountControl": uac_of(a)} for name, a in still],
        "not_counted": [*excluded, *({"requested": n, "dn": a.dn, "reason": "the agent may not change it"}
                                     for n, a in enabled if a.dn in unchangeable)]}
    if still:
        shown = ", ".join(n for n, _ in still[:_SHOWN])
        more = len(still) - _SHOWN if len(still) > _SHOWN else 0
        summary = f"enabled: {shown}" + (f" and {more} more" if more else "") + (" and more" if truncated
                                                                                 else "")
    else:
        summary = f"no account named by the {len(names)} names is enabled"
    if observed["not_counted"]:
        summary += "; not counted: " + ", ".join(f"{x['requested']} ({x['reason'].replace('_', ' ')})"
                                                 for x in observed["not_counted"][:_SHOWN])
    return Verification(not still, summary, observed)


def _in_scope_enabled(session: ADSession, names: Sequence[str], entries: Sequence[Entry]
                      ) -> tuple[list[tuple[str, Account]], list[dict[str, Any]]]:
    """The enabled entries the search returned, as (name, account) pairs the action is responsible for: the
    names that found them are resolved again in full (an ambiguous name, or a protected account, is not)."""
    if not entries:
        return [], []
    with_dn = any(looks_like_dn(n) for n in names)
    keys = set().union(*(match_keys(e, with_dn) for e in entries))
    dns = {e["dn"] for e in entries}
    inside, outside = [], []
    for res in resolve_many(session, [n for n in names if name_key(n) in keys], _ATTRS):
        if res.account is not None and not res.problem:
            if res.account.dn in dns and not uac_of(res.account) & ACCOUNTDISABLE:
                inside.append((res.requested, res.account))
        elif res.problem in ("ambiguous", "protected_account") and set(res.matches) & dns:
            outside.append({"requested": res.requested, "reason": res.problem, "matches": res.matches})
    return inside, outside


def _unchangeable(session: ADSession, enabled: Sequence[Account]) -> set[str]:
    """Enabled accounts the agent may not change — checked only until one it may change is found (then the
    answer is "not in effect" whatever the rest: the usual case after an undo costs one read, not one each)."""
    denied: set[str] = set()
    start, size = 0, 1
    while start < len(enabled):
        chunk = enabled[start:start + size]
        found = _not_writable(session, chunk)
        denied |= found
        if len(found) < len(chunk):
            break
        start, size = start + size, size * 8
    return denied


def _not_writable(session: ADSession, accounts: Sequence[Account]) -> set[str]:
    """DNs of ``accounts`` whose userAccountControl the bind account may not write (allowedAttributesEffective)."""
    denied = set()
    for account, entries in zip(accounts, session.read_many([a.dn for a in accounts],
                                                             ["allowedAttributesEffective"]), strict=True):
        allowed = {v.decode("utf-8", "replace").lower() for e in entries
                   for v in e["attributes"].get("allowedAttributesEffective", [])}
        if entries and "useraccountcontrol" not in allowed:
            denied.add(account.dn)
    return denied


def undo_batch(session: ADSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
    """Swap every account this action disabled back to its recorded value; leave the others alone.

    One search asks for the recorded accounts whose value is no longer the one this action set (by objectGUID);
    normally none. The rest get a swap from ``recorded | 0x2`` to ``recorded``; the few the search returned are
    decided from the value it read (already restored → nothing sent; changed → swapped from that value).
    """
    items = [i for i in snap.data["accounts"] if i["status"] == "ok"]
    outcomes: list[dict[str, Any] | None] = []
    todo: list[tuple[dict[str, Any], int, int]] = []
    slots: list[int] = []
    candidates = [i for i in items if not int(i["userAccountControl"]) & ACCOUNTDISABLE]
    changed = _changed_since(session, candidates)
    for given in items:
        item = given
        recorded = int(item["userAccountControl"])
        if recorded & ACCOUNTDISABLE:
            outcomes.append(_outcome(item, "left_disabled", userAccountControl_before=recorded,
                                     note="already disabled before the action: not changed by it, not undone"))
            continue
        now = recorded | ACCOUNTDISABLE
        found = changed.get(str(item["account"].get("objectGUID")))
        if found is not None:
            now = uac_of(found)
            if now == recorded:
                outcomes.append(_outcome(item, "already_restored", userAccountControl_before=now,
                                         userAccountControl_after=recorded))
                continue
            item = {**item, "account": {**item["account"], "dn": found.dn}}
        slots.append(len(outcomes))
        outcomes.append(None)
        todo.append((item, now, recorded))
    swapped = _swap_all(session, todo, settle_restore, "restored") if todo else []
    for slot, (item, _old, _new), outcome in zip(slots, todo, swapped, strict=True):
        recorded = int(item["userAccountControl"])
        before = outcome.get("userAccountControl_before")
        if outcome["outcome"] == "restored" and before is not None and before != recorded | ACCOUNTDISABLE:
            outcome.setdefault("warning", f"{outcome['requested']}: userAccountControl changed since the "
                                          f"snapshot ({before:#x}, expected {recorded | 2:#x}); restored the "
                                          f"recorded value {recorded:#x}")
        outcomes[slot] = outcome
    final = [o for o in outcomes if o is not None]
    counts = _count(final)
    details = {"accounts": final, "counts": counts}
    if not counts.get("restored") and counts.get("failed"):
        first_failed = next(o for o in final if o["outcome"] == "failed")
        raise Rejected(f"no account was restored: {first_failed['requested']}: {first_failed['error']}",
                       detail=details)
    return ActionResult(bool(counts.get("restored")), _summary("restored", final, counts), details,
                        _warnings(final))


def _changed_since(session: ADSession, items: Sequence[Mapping[str, Any]]) -> dict[str, Account]:
    """The recorded accounts whose userAccountControl is not the value this action set, by objectGUID.

    An account that no longer exists is not returned: its swap fails with noSuchObject and is settled alone
    (found again by GUID if it was renamed or moved, reported failed if it is gone).
    """
    terms = [f"(&(objectGUID={guid_value(str(i['account']['objectGUID']))})"
             f"(!(userAccountControl={int(i['userAccountControl']) | ACCOUNTDISABLE})))"
             for i in items if i["account"].get("objectGUID")]
    filters = [f"(&{USER_FILTER}(|{''.join(terms[k:k + NAMES_PER_FILTER])}))"
               for k in range(0, len(terms), NAMES_PER_FILTER)]
    attrs = sorted({*IDENTITY_ATTRS, *_ATTRS})
    entries = session.search_many(session.opts.base_dn, filters, attrs)[0] if filters else []
    return {account.guid: account for account in map(Account.from_entry, entries)}
