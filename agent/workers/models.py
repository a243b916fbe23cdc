"""The journal rows of site reads (agent/workers/reads.py), on the journal's declarative ``Base`` (one schema,
one Alembic history: revision 0009_site_reads).

Why not in agent.store: only processes that route reads to site workers (and the workers) use them; a journal
command that never does — ``agent status``, a contain on a single machine — neither declares nor configures the
mapper (start-up, issue 21; agent/daemon_models.py does the same for the daemon's rows). agent.migrations.schema
imports this module so the migrated schema always includes the table.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agent.store import Base, utcnow

__all__ = ["SiteRead"]


class SiteRead(Base):
    """A read done for this deployment by a worker of the target's site (agent/workers/reads.py): re-verify an
    action (``status --verify``, the daemon's drift check), re-apply a drifted one, or a plan's resolve step.

    Why a row and not a Celery result: like an action, a read is claimed by lease (``owner``, ``lease_until``)
    so a redelivered message runs it at most once, and its result — with the worker that read it — is written
    once, in the same transaction as the proof it journals; the requester waits on this row."""

    __tablename__ = "site_reads"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    site: Mapped[str] = mapped_column(String(80), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # verify | reapply | resolve | identify | pin | settle
    action_id: Mapped[str | None] = mapped_column(ForeignKey("actions.id"), default=None, index=True)
    target: Mapped[str] = mapped_column(String(200))  # the inventory name (entry) read
    target_kind: Mapped[str] = mapped_column(String(20), default="host")  # host | device | account
    address: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str] = mapped_column(String(60), default="")
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cause: Mapped[str] = mapped_column(String(80), default="")  # who asked: status --verify, daemon, plan
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)  # queued|running|done|failed
    owner: Mapped[str] = mapped_column(String(80), default="")
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(default=None)
