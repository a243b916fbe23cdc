"""The delivery queue in the agent database: queued the moment a notice is recognised, delivered later.

Why a table and not a thread-local queue: a notice must survive a daemon restart (the approval is still waiting
after it), and queuing must cost one INSERT, never a network round trip, because it happens on the path that
writes the audit record of a containment. Rows: ``queued`` → ``sent`` | ``failed`` (permanent error or
``max_attempts`` used); ``next_at`` carries the backoff.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from agent.notify.config import NotifyConfig
from agent.notify.events import Notice
from agent.store import Notification, Store, utcnow

__all__ = ["Due", "Outbox"]


@dataclass(frozen=True)
class Due:
    id: int
    channel: str
    notice: Notice
    attempts: int


class Outbox:
    def __init__(self, store: Store, config: NotifyConfig) -> None:
        self.store, self.config = store, config

    def enqueue(self, notice: Notice) -> list[int]:
        """One row per channel that wants this kind of notice; returns their ids (none: nobody asked)."""
        channels = self.config.channels_for(notice.event)
        if not channels:
            return []
        rows = [Notification(channel=c.name, event=notice.event, notice=notice.as_dict(), state="queued",
                             attempts=0, next_at=utcnow(), last_error="") for c in channels]
        with self.store.session() as s:
            s.add_all(rows)
            s.flush()
            return [r.id for r in rows]

    def due(self, now: datetime | None = None, limit: int = 50) -> list[Due]:
        now = now or utcnow()
        with self.store.session() as s:
            rows = list(s.scalars(select(Notification).where(Notification.state == "queued",
                                                             Notification.next_at <= now)
                                  .order_by(Notification.next_at, Notification.id).limit(limit)))
            return [Due(r.id, r.channel, Notice.from_dict(r.notice), r.attempts) for r in rows]

    def sent(self, row_id: int) -> None:
        with self.store.session() as s:
            s.execute(update(Notification).where(Notification.id == row_id).values(
                state="sent", sent_at=utcnow(), attempts=Notification.attempts + 1, last_error=""))

    def failed(self, row_id: int, error: str, *, permanent: bool, attempts: int) -> bool:
        """Record a failed attempt; schedule the next one with doubling backoff. True when given up."""
        used = attempts + 1
        give_up = permanent or used >= self.config.max_attempts
        delay = min(self.config.retry_base_s * (2 ** (used - 1)), self.config.retry_max_s)
        with self.store.session() as s:
            s.execute(update(Notification).where(Notification.id == row_id).values(
                state="failed" if give_up else "queued", attempts=used, last_error=error[:500],
                next_at=utcnow() + timedelta(seconds=delay)))
        return give_up

    def counts(self) -> dict[str, int]:
        from sqlalchemy import func

        with self.store.session() as s:
            return {state: n for state, n in s.execute(
                select(Notification.state, func.count()).group_by(Notification.state))}
