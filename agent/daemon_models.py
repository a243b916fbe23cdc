"""The daemon's and the console's rows — alerts, approvals, operators, console sessions, the notification outbox —
in the journal's database and on its declarative ``Base`` (one schema, one Alembic history).

Why not in agent.store: every CLI command opens the journal, and declaring a mapped class and configuring its
mapper costs start-up time (≈ 60 M instructions for these five, issue 21) that ``agent status`` or a contain never
needs. ``agent.store`` still exports them by name (loaded on first use); agent.migrations.schema imports this
module so the migrated schema always includes them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agent.store import Base, utcnow

__all__ = ["Alert", "Approval", "ConsoleSession", "Notification", "Operator"]


class Alert(Base):
    __tablename__ = "alerts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    source: Mapped[str] = mapped_column(String(40))
    rule_id: Mapped[str] = mapped_column(String(200), default="")
    severity: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    user: Mapped[str | None] = mapped_column(String(255), default=None)
    source_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), default=None)
    disposition: Mapped[str] = mapped_column(String(40), default="received")
    event_time: Mapped[datetime | None] = mapped_column(default=None)  # when the sender says it happened
    rule_name: Mapped[str | None] = mapped_column(String(300), default=None)  # the sender's name for its rule


class Approval(Base):
    __tablename__ = "approvals"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4())[:8])
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    runbook: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")  # pending|approved|denied|expired
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str | None] = mapped_column(String(200), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decision_reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(200), default="")  # four-eyes: the approver must differ


class Operator(Base):
    """A person who signs in to the console (agent/console): name, role, argon2id password hash."""

    __tablename__ = "operators"
    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))  # viewer | responder | approver | admin
    password_hash: Mapped[str] = mapped_column(Text)
    disabled: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConsoleSession(Base):
    """A signed-in console session: only a hash of the cookie's value is stored, with its CSRF token."""

    __tablename__ = "console_sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator: Mapped[str] = mapped_column(ForeignKey("operators.name"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class Notification(Base):
    """The notification outbox (agent.notify): one row per notice and channel, delivered with retries."""

    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(80))
    event: Mapped[str] = mapped_column(String(40))
    notice: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(20), default="queued", index=True)  # queued|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")
