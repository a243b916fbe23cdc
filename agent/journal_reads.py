"""The journal's reads that more than one command shows: what is contained, unfinished or in doubt, and the
transitions of actions — ORM selects over a session of the one :class:`agent.store.Store`.

Why one module: ``agent status``, ``agent incidents show`` and the console must agree about what the journal
says, so they read it through the same statements and the same mapped rows (issue 21 forbids a second query
path, e.g. hand-written SQL to save start-up time). Each function takes an open session, so a command reads all
its sections in one transaction and they agree with each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from agent.states import ACTIVE_STATES
from agent.store import Action, Incident, Transition

__all__ = ["contained", "in_doubt", "recent_incidents", "transitions", "unfinished"]


def recent_incidents(s: Session, limit: int | None = None) -> list[Incident]:
    """Incidents newest first (``incidents list``; shell completion offers their ids from the same read)."""
    q = select(Incident).order_by(Incident.created_at.desc())
    return list(s.scalars(q if limit is None else q.limit(limit)))


def contained(s: Session) -> list[Action]:
    """Applied, changed, not undone mutating actions, with their items (position order): what may be in effect
    on the targets. Lifting actions (unblock) are included: the caller asks the registry which actions lift."""
    return list(s.scalars(select(Action).where(
        Action.kind == "apply", Action.state == "done", Action.undone_at.is_(None), Action.changed == 1,
        Action.mutating == 1).options(selectinload(Action.items)).order_by(Action.seq)))


def unfinished(s: Session) -> list[Action]:
    """Interrupted between intent and a final state (reconciled on the next run)."""
    return list(s.scalars(select(Action).where(Action.state.in_(ACTIVE_STATES)).order_by(Action.seq)))


def in_doubt(s: Session) -> list[Action]:
    """Sent but not verified (may be in effect), not undone since."""
    return list(s.scalars(select(Action).where(Action.state == "in_doubt", Action.undone_at.is_(None))
                          .order_by(Action.seq)))


def transitions(s: Session, action_ids: Sequence[str], to_state: str | None = None) -> list[Transition]:
    """The transitions of these actions (only those into ``to_state`` if given), oldest first: an action's
    history (``incidents show``) and its read-backs (agent.proof)."""
    if not action_ids:
        return []
    query = select(Transition).where(Transition.action_id.in_(list(action_ids)))
    if to_state is not None:
        query = query.where(Transition.to_state == to_state)
    return list(s.scalars(query.order_by(Transition.id)))
