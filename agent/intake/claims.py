"""Dedupe claims in the database: which incident holds (runbook, target), shared by every daemon on the store.

Why here and not only in memory: the in-memory :class:`~agent.intake.limits.DedupeIndex` coalesces a storm in
the request path, but it is one process's view. The claim that decides "this alert joins an incident that is
acting" is taken here, at decision time, with a single conditional statement — insert, or take over a claim
whose window is over or whose holder no longer acts — so two daemons deciding the same key at the same moment
cannot both win; the dispatcher runs it in the alert writer's next group commit (one fsync shared with the
webhook's inserts) and waits for that commit before acting. Only incidents that act (executing, executed) or wait
for a person (approval pending) hold a claim; a dry-run rehearsal, a refused or empty plan, a denied or expired
approval and a released incident do not (:func:`give_up`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from agent.intake.tables import IntakeClaim, IntakeIncident

__all__ = ["ACTING", "NOT_ACTING", "claim", "denied", "give_up", "holder", "live_claims"]

#: intake decisions of an incident that holds its claim
ACTING = ("queued", "executing", "approval-pending", "approved")
#: decisions that never hold one (a claim left behind by a crash before give_up is ignored)
NOT_ACTING = ("dry-run", "refused", "nothing-to-do", "denied", "expired", "error", "deduped")


def _acting(decision: str) -> bool:
    return decision.split(":")[0] not in NOT_ACTING


def holder(conn: Any, runbook: str, target: str) -> tuple[str, datetime] | None:
    row = conn.execute(select(IntakeClaim.incident_id, IntakeClaim.since).where(
        IntakeClaim.runbook == runbook, IntakeClaim.target == target)).first()
    return (row[0], row[1]) if row else None


def claim(conn: Any, runbook: str, target: str, incident: str, now: datetime,
          window: timedelta) -> tuple[bool, str]:
    """Take (runbook, target) for ``incident`` in the caller's transaction (the alert writer's group commit):
    ``(True, incident)``, or ``(False, holder)`` when another incident holds a live claim (within ``window`` and
    still acting). Taking it again for the same incident is a no-op that answers True (a retried commit)."""
    for _ in range(3):
        held = holder(conn, runbook, target)
        if held is None:
            try:
                _insert_claim(conn, runbook, target, incident, now)
                return True, incident
            except IntegrityError:  # another daemon inserted it meanwhile: read it again
                continue
        other, since = held
        if other == incident:
            return True, incident
        from agent.store import Incident
        decision = conn.execute(select(IntakeIncident.decision).where(
            IntakeIncident.incident_id == other)).scalar()
        status = conn.execute(select(Incident.status).where(Incident.id == other)).scalar()
        if now - since < window and status != "released" and (decision is None or _acting(str(decision))):
            return False, other
        # compare-and-swap: only if the claim is still the one we read
        taken = conn.execute(update(IntakeClaim).where(
            IntakeClaim.runbook == runbook, IntakeClaim.target == target,
            IntakeClaim.incident_id == other).values(incident_id=incident, since=now)).rowcount
        if taken == 1:
            return True, incident
    return False, ""


def _insert_claim(conn: Any, runbook: str, target: str, incident: str, now: datetime) -> None:
    """INSERT the claim; a unique-key violation raises IntegrityError and leaves the caller's transaction usable.

    PostgreSQL aborts the whole transaction on a failed statement, so the INSERT runs in a savepoint there. SQLite
    aborts only the failing statement ("ABORT ... the transaction remains active", sqlite.org/lang_conflict.html),
    and a SAVEPOINT issued before the transaction's first write would open — and its RELEASE commit — a
    transaction of its own through pysqlite (SQLAlchemy's SQLite dialect notes, "Serializable isolation /
    Savepoints"), i.e. the separate commit this function exists to avoid.
    """
    stmt = insert(IntakeClaim).values(runbook=runbook, target=target, incident_id=incident, since=now)
    if conn.dialect.name == "sqlite":
        conn.execute(stmt)
        return
    with conn.begin_nested():
        conn.execute(stmt)


def give_up(engine: Any, incident: str) -> None:
    """``incident`` no longer acts (refused, denied, expired, released): its claims are free."""
    with engine.begin() as conn:
        conn.execute(delete(IntakeClaim).where(IntakeClaim.incident_id == incident))


def denied(engine: Any, incident: str) -> bool:
    """A person denied the incident's plan: free its claims, and close it when nothing was ever applied for it.

    Returns True when the incident was closed (an incident with applied actions stays as it is: it has a
    containment to release).
    """
    from agent.store import Action, Incident
    give_up(engine, incident)
    with engine.begin() as conn:
        conn.execute(update(IntakeIncident).where(IntakeIncident.incident_id == incident)
                     .values(decision="denied"))
        applied = conn.execute(select(Action.id).where(Action.incident_id == incident).limit(1)).first()
        if applied is not None:
            return False
        return bool(conn.execute(update(Incident).where(Incident.id == incident, Incident.status == "open")
                                 .values(status="closed")).rowcount)


def live_claims(conn: Any, since: datetime) -> list[tuple[str, str, str, datetime]]:
    """``(runbook, target, incident, since)`` of claims newer than ``since`` (to rebuild the memory index)."""
    return [(r[0], r[1], r[2], r[3]) for r in conn.execute(select(
        IntakeClaim.runbook, IntakeClaim.target, IntakeClaim.incident_id, IntakeClaim.since).where(
        IntakeClaim.since >= since))]
