"""The intake's own table: which (runbook, target) an alert-opened incident is about, and under which rule.

Kept out of :mod:`agent.store` (the journal's schema) on purpose: it is the daemon's bookkeeping for dedupe and
for re-queuing undecided alerts after a restart, created on the same database by :func:`create_tables`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agent.store import _UTC, utcnow

__all__ = ["IntakeBase", "IntakeClaim", "IntakeIncident", "IntakeSetting", "create_tables"]


class IntakeBase(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: _UTC()}


class IntakeIncident(IntakeBase):
    __tablename__ = "intake_incidents"
    incident_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    runbook: Mapped[str] = mapped_column(String(80), index=True)
    target: Mapped[str] = mapped_column(String(255), index=True)
    rule: Mapped[str] = mapped_column(String(80))
    policy: Mapped[str] = mapped_column(String(20))
    alert_id: Mapped[str] = mapped_column(String(36))  # the alert that opened it
    opened_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    decision: Mapped[str] = mapped_column(String(40), default="queued")  # queued|executing|executed|...
    detail: Mapped[str] = mapped_column(Text, default="")


class IntakeClaim(IntakeBase):
    """A dedupe claim on (runbook, target), held only by an incident that acted or awaits an approval.

    In the database, not only in memory, so two daemons on one database agree: a claim is taken with one
    conditional statement (:mod:`agent.intake.claims`) when an incident is about to act, and given up when the
    incident is released, its approval denied or expired, or its plan refused. Dry-run rehearsals never claim.
    """

    __tablename__ = "intake_claims"
    runbook: Mapped[str] = mapped_column(String(80), primary_key=True)
    target: Mapped[str] = mapped_column(String(255), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(40), index=True)
    since: Mapped[datetime] = mapped_column(default=utcnow)


class IntakeSetting(IntakeBase):
    """Switches every daemon on the database obeys (``automation``: ``paused`` or ``running``), with who set them."""

    __tablename__ = "intake_settings"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(40))
    changed_by: Mapped[str] = mapped_column(String(200), default="")
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(Text, default="")


def create_tables(engine: Any) -> None:
    IntakeBase.metadata.create_all(engine)
