"""Resolving many account names at once: one paged, pipelined search per :data:`NAMES_PER_FILTER` names.

Why a module of its own (STYLE #2): :mod:`connectors.active_directory.accounts` decides what one name means and
which accounts are never touched; this module applies exactly those rules to a batch (ARCHITECTURE: thousands of
accounts in one command) without a search per name — it matches the entries the DC returns back to the names
locally, and falls back to resolving a name on its own where local matching cannot place it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from connectors.active_directory.accounts import (
    IDENTITY_ATTRS,
    Account,
    check_not_protected,
    domain_problem,
    how_named,
    looks_like_dn,
    match_keys,
    name_filter,
    name_key,
    resolve,
)
from connectors.active_directory.session import ADSession, Entry
from connectors.errors import Rejected

__all__ = ["NAMES_PER_FILTER", "Resolution", "resolve_many"]

NAMES_PER_FILTER = 200  # names per OR filter (≤ 400 terms): small requests; more names → more (pipelined) searches


@dataclass
class Resolution:
    """What one requested name resolved to in a batch: an account, or why there is none to act on."""

    requested: str
    account: Account | None = None
    problem: str = ""  # "" | not_found | ambiguous | protected_account | duplicate
    message: str = ""
    matches: list[str] = field(default_factory=list)


def resolve_many(session: ADSession, names: Sequence[str], attributes: Sequence[str] = ()) -> list[Resolution]:
    """Resolve validated ``names`` with one search per :data:`NAMES_PER_FILTER` names (pipelined, paged).

    Same rules as :func:`resolve`, per name: no match → ``not_found``, several → ``ambiguous``, a protected
    account → ``protected_account``; a name naming an account an earlier name already named → ``duplicate``.
    A name the local matching cannot place (Unicode case rules differ from the DC's) is resolved on its own.
    """
    attrs = sorted({*IDENTITY_ATTRS, *attributes})
    filters = [name_filter(names[i:i + NAMES_PER_FILTER]) for i in range(0, len(names), NAMES_PER_FILTER)]
    entries = session.search_many(session.opts.base_dn, filters, attrs)[0] if names else []
    index: dict[tuple[str, str], list[Entry]] = {}
    unique: dict[str, Entry] = {}
    with_dn = any(looks_like_dn(n) for n in names)
    for entry in entries:
        if entry["dn"] in unique:
            continue  # the same entry found by two chunks (the DC writes a DN the same way each time)
        unique[entry["dn"]] = entry
        for key in match_keys(entry, with_dn):
            index.setdefault(key, []).append(entry)
    placed: set[str] = set()
    out: list[Resolution] = []
    for name in names:
        problem = domain_problem(session, name)
        if problem:
            out.append(Resolution(name, problem="wrong_domain", message=problem))
            continue
        matches = index.get(name_key(name), [])
        placed.update(e["dn"] for e in matches)
        out.append(_resolution(session, name, matches))
    if set(unique) - placed:
        for i, res in enumerate(out):
            if res.problem == "not_found":
                out[i] = _resolve_alone(session, res.requested, attrs)
    claimed: dict[str, str] = {}
    for res in out:
        if res.account is None:
            continue
        first_name = claimed.setdefault(res.account.guid or res.account.dn, res.requested)
        if first_name != res.requested:
            res.problem, res.message = "duplicate", f"names the same account as {first_name!r} ({res.account.dn})"
    return out


def _resolution(session: ADSession, name: str, matches: list[Entry]) -> Resolution:
    if not matches:
        how = how_named(name)
        return Resolution(name, problem="not_found",
                          message=f"no user account with {how} {name!r} under {session.opts.base_dn!r}")
    if len(matches) > 1:
        dns = [e["dn"] for e in matches]
        return Resolution(name, problem="ambiguous", matches=dns,
                          message=f"account {name!r} is ambiguous: it matches {', '.join(dns)} — name it by DN")
    account = Account.from_entry(matches[0])
    try:
        check_not_protected(session, account)
    except Rejected as exc:
        return Resolution(name, account=None, problem="protected_account", message=exc.message,
                          matches=[account.dn])
    return Resolution(name, account=account)


def _resolve_alone(session: ADSession, name: str, attrs: Sequence[str]) -> Resolution:
    try:
        return Resolution(name, account=resolve(session, name, attrs))
    except Rejected as exc:
        reason = str(exc.detail.get("reason", "not_found"))
        return Resolution(name, problem=reason, message=exc.message, matches=list(exc.detail.get("matches", [])))
