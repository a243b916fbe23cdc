"""Proof behind ``agent status``: when each containment was last read back from its target, with what result,
the dead-man timer its apply left on the target, and its TTL — all from the journal, nothing contacted.

Why a re-verification is journaled as a transition (``done`` → ``done``, detail ``re-verified <result> (<cause>):
<summary>``): the journal is the one record of what the agent knows about an action; ``agent incidents show``
lists it in the action's history, and the next plain ``agent status`` shows it without a second store. The
first verification is the transition into ``done`` the engine wrote after reading the effect back
(agent.lifecycle); later ones come from ``status --verify`` and the daemon's periodic re-verification.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from agent.store import Action, Store, Transition

__all__ = ["LastCheck", "add_check", "checks_in", "last_checks", "newest_checks", "record_all", "record_check",
           "timer_of", "ttl_of"]

RESULTS = ("in_effect", "drift", "unverified")
_REVERIFIED = re.compile(r"re-verified (in_effect|drift|unverified) \(([^)]*)\): (.*)", re.DOTALL)


@dataclass(frozen=True)
class LastCheck:
    """The newest read-back of an action: ``result`` is in_effect | drift | unverified; ``cause`` says who read
    it (``apply`` for the engine's own verification, ``status --verify``, ``daemon``)."""

    at: datetime
    result: str
    cause: str
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "result": self.result, "cause": self.cause, "summary": self.summary}


def record_check(store: Store, action_id: str, result: str, summary: str, cause: str) -> None:
    """Journal one read-back of an active (``done``) action; its state does not change."""
    with store.session() as s:
        add_check(s, action_id, result, summary, cause)


def add_check(s: Any, action_id: str, result: str, summary: str, cause: str) -> None:
    """:func:`record_check` inside the caller's transaction (a site worker settles its read in the same one)."""
    if result not in RESULTS:
        raise ValueError(f"verification result {result!r} is not one of {', '.join(RESULTS)}")
    from agent.store import Action, Transition, utcnow

    cause = cause.replace("(", "[").replace(")", "]")  # the detail's grammar: the cause sits in parentheses
    row = s.get(Action, action_id)
    if row is None:
        return
    s.add(Transition(action_id=action_id, from_state=row.state, to_state=row.state, at=utcnow(),
                     detail=f"re-verified {result} ({cause}): {summary}"))


def last_checks(store: Store, action_ids: Sequence[str]) -> dict[str, LastCheck]:
    """Per action, its newest verification in the journal (absent: never verified — e.g. an in-doubt row)."""
    with store.session() as s:
        return checks_in(s, action_ids)


def checks_in(s: Session, action_ids: Sequence[str]) -> dict[str, LastCheck]:
    """:func:`last_checks` in an open session (``agent status`` reads every section in one transaction)."""
    from agent.journal_reads import transitions

    return newest_checks(transitions(s, action_ids, to_state="done"))


def newest_checks(rows: Iterable[Transition]) -> dict[str, LastCheck]:
    """Per action, the newest verification among its transitions into ``done`` (oldest first)."""
    out: dict[str, LastCheck] = {}
    for t in rows:
        detail = t.detail or ""
        found = _REVERIFIED.fullmatch(detail)
        if found:
            out[t.action_id] = LastCheck(t.at, found.group(1), found.group(2), found.group(3))
        elif t.from_state != "done":  # the engine read the effect back before it marked the action done
            out[t.action_id] = LastCheck(t.at, "in_effect", "apply", detail)
    return out


def timer_of(row: Action, now: datetime | None = None) -> dict[str, Any] | None:
    """The dead-man timer the apply recorded (ssh_linux: ``result.details.deadman``), as the journal knows it:
    ``state`` is ``cancelled`` (confirmed through a fresh connection), ``armed`` (still due) or ``expired``
    (its due time passed: the host has reverted by itself unless confirmed since). None: no timer was armed.
    The token is left out: it is the handle that cancels the timer."""
    details = (row.result or {}).get("details") if isinstance(row.result, dict) else None
    timer = details.get("deadman") if isinstance(details, dict) else None
    if not isinstance(timer, dict):
        return None
    due = _parse(timer.get("reverts_at"))
    if timer.get("cancelled"):
        state = "cancelled"
    elif due is not None and due <= (now or datetime.now(UTC)):
        state = "expired"
    else:
        state = "armed"
    return {"state": state, "armed_seconds": timer.get("armed_seconds"), "pid": timer.get("pid"),
            "reverts_at": due.isoformat() if due else None, "confirm": timer.get("confirm")}


def ttl_of(row: Action, now: datetime) -> dict[str, Any] | None:
    """The action's TTL: when it is released by itself, seconds left, and whether that is overdue."""
    if row.expires_at is None:
        return None
    left = int((row.expires_at - now).total_seconds())
    return {"expires_at": row.expires_at.isoformat(), "seconds_left": max(left, 0), "overdue": left <= 0}


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_all(store: Store, checks: Iterable[Any], cause: str) -> None:
    """Journal every :class:`agent.containments.Check` of one ``status --verify`` run."""
    for check in checks:
        record_check(store, check.action.id, check.state, check.summary, cause)
