"""The journal: incidents, actions and their state transitions (SQLAlchemy 2; SQLite in WAL mode by default).

Why every transition is a committed row: a crash at any point leaves a record of exactly how far each action got,
so the engine can reconcile on start (verify the target's real state; finish or mark failed — never apply twice).
The daemon adds alerts and approvals to the same database; APScheduler's job store shares it too.
The schema is versioned with Alembic (agent/migrations): a model change here needs a revision there.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import (JSON, DateTime, ForeignKey, Integer, LargeBinary, String, Text, create_engine, event, select,
                        text)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.types import TypeDecorator

from agent.states import ACTIVE_STATES, ITEM_STATES, TERMINAL_STATES

__all__ = [
    "ACTIVE_STATES",
    "ITEM_STATES",
    "TERMINAL_STATES",
    "Action",
    "ActionItem",
    "Alert",
    "Approval",
    "AuditChain",
    "AuditOutbox",
    "Base",
    "ConsoleSession",
    "Incident",
    "Notification",
    "Operator",
    "Store",
    "Transition",
    "utcnow",
]

# State names live in agent.states (read without loading these models); re-exported here.

if TYPE_CHECKING:  # mapped in agent.daemon_models, loaded on first use through __getattr__ below
    from agent.daemon_models import Alert, Approval, ConsoleSession, Notification, Operator

_DAEMON_MODELS = frozenset({"Alert", "Approval", "ConsoleSession", "Notification", "Operator"})


def __getattr__(name: str) -> Any:
    """``from agent.store import Approval`` keeps working: the daemon's and console's rows are declared in
    agent.daemon_models, which only the commands that use them import (a journal command neither declares nor
    configures their mappers: start-up, issue 21)."""
    if name in _DAEMON_MODELS:
        from agent import daemon_models
        return getattr(daemon_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def utcnow() -> datetime:
    return datetime.now(UTC)


class _UTC(TypeDecorator[datetime]):
    """Timestamps stored as UTC; SQLite drops the zone, so it is put back on the way out."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: _UTC()}


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    title: Mapped[str] = mapped_column(Text, default="")
    # open | contained | partial (some items failed or are in doubt) | released | closed
    status: Mapped[str] = mapped_column(String(20), default="open")
    trigger: Mapped[str] = mapped_column(String(40), default="cli")  # cli | alert:<source> | schedule
    reason: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    discovered_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    contained_at: Mapped[datetime | None] = mapped_column(default=None)
    actions: Mapped[list[Action]] = relationship(back_populates="incident", order_by="Action.seq")


class Action(Base):
    __tablename__ = "actions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    seq: Mapped[int] = mapped_column(Integer, autoincrement=True, default=0, index=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    runbook: Mapped[str] = mapped_column(String(80))
    step: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(10), default="apply")  # apply | undo
    undo_of: Mapped[str | None] = mapped_column(ForeignKey("actions.id"), default=None)
    target: Mapped[str] = mapped_column(String(200), index=True)
    subject: Mapped[str] = mapped_column(String(255), default="", index=True)  # what the user named
    target_kind: Mapped[str] = mapped_column(String(20), default="host")
    address: Mapped[str] = mapped_column(String(64), default="")
    connector: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(60))
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reversible: Mapped[int] = mapped_column(Integer, default=1)
    mutating: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(20), default="intent", index=True)
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    error_kind: Mapped[str | None] = mapped_column(String(40), default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int | None] = mapped_column(Integer, default=None)
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    approved_by: Mapped[str | None] = mapped_column(String(200), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(80), default="")  # "host:pid" of the process executing it
    # per-site workers (agent/workers): the site queue it was routed to (None: run by the process that planned
    # it) and the claim of the worker running it, renewed by heartbeat; expired = that worker is gone
    site: Mapped[str | None] = mapped_column(String(80), default=None, index=True)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)  # TTL: release due
    undone_at: Mapped[datetime | None] = mapped_column(default=None)
    incident: Mapped[Incident] = relationship(back_populates="actions")
    transitions: Mapped[list[Transition]] = relationship(order_by="Transition.id")
    items: Mapped[list[ActionItem]] = relationship(back_populates="parent", order_by="ActionItem.position",
                                                   cascade="all, delete-orphan")

    def summary(self) -> dict[str, Any]:
        """The action as ``--json`` shows it (status, incidents show, the console's API)."""
        return {
            "id": self.id, "incident": self.incident_id, "runbook": self.runbook, "step": self.step,
            "kind": self.kind, "undo_of": self.undo_of, "target": self.target, "subject": self.subject,
            "address": self.address,
            "connector": self.connector, "action": self.action, "state": self.state, "changed": self.changed,
            "error": self.error, "error_kind": self.error_kind, "attempts": self.attempts,
            "result": self.result, "verification": self.verification,
            "created_at": _iso(self.created_at), "updated_at": _iso(self.updated_at),
            "expires_at": _iso(self.expires_at), "undone_at": _iso(self.undone_at),
            "requested_by": self.requested_by, "approved_by": self.approved_by, "reason": self.reason,
            "owner": self.owner,
        }


class ActionItem(Base):
    """One subject of an action: an account of a batched disable, an address of a block, the host of an isolate.

    Why a table and not ``Action.args``: a batch succeeds per item (58 of 100 accounts disabled), undo matches
    per item (``enable-account B`` undoes B alone out of ``disable-account A B C``), and "who did we touch"
    (blast radius, ``unblock-ip`` bookkeeping, status) must be answered by the item's canonical identity, never
    by how the user happened to spell it. ``canonical`` is ``guid:<objectGUID>`` / ``name:<casefolded name>``
    for accounts, ``net:<normalised CIDR>`` for addresses, ``host:<inventory name>`` for hosts (the pinned
    address is the action's ``address``); ``requested`` is the spelling the user gave.
    """

    __tablename__ = "action_items"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[str] = mapped_column(ForeignKey("actions.id"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(20), default="host")  # host | account | address
    canonical: Mapped[str] = mapped_column(String(255), index=True)
    requested: Mapped[str] = mapped_column(String(255), default="")
    state: Mapped[str] = mapped_column(String(20), default="intent")  # ITEM_STATES
    outcome: Mapped[str] = mapped_column(String(40), default="")  # the connector's word: disabled, already_blocked
    changed: Mapped[int | None] = mapped_column(Integer, default=None)  # 1: this action changed it (undo it)
    snapshot: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    undone_at: Mapped[datetime | None] = mapped_column(default=None)
    undone_by: Mapped[str | None] = mapped_column(String(36), default=None)
    parent: Mapped[Action] = relationship(back_populates="items")

    def summary(self) -> dict[str, Any]:
        return {"canonical": self.canonical, "requested": self.requested, "kind": self.kind, "state": self.state,
                "outcome": self.outcome, "changed": self.changed, "error": self.error,
                "verification": self.verification, "undone_at": _iso(self.undone_at)}


class Transition(Base):
    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    action_id: Mapped[str] = mapped_column(ForeignKey("actions.id"), index=True)
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class AuditOutbox(Base):
    """Audit records of processes that do not own the deployment's audit chain (site workers), waiting for the
    chain's writer (agent.audit.outbox). Inserted in the same transaction as the journal transition they
    describe, deleted once appended to the chain and made durable there."""

    __tablename__ = "audit_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident: Mapped[str | None] = mapped_column(String(40), default=None, index=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # already redacted, with its event time
    # the evidence file an ``evidence.stored`` record names: it goes to the core with its record, so the
    # deployment's evidence folder and an export hold what the signed SHA-256 covers
    attachment: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # set by a drain before it appends the row (the chain's seq then): a drain that died between appending and
    # deleting is finished by the next one, which looks for the row's outbox_id in the chain after this seq
    drain_from: Mapped[int | None] = mapped_column(Integer, default=None)


class AuditChain(Base):
    """Which chain is the deployment's: the hash of its first record, registered by the first drain. A writer
    whose audit directory holds another chain refuses to drain (records would be split over two chains)."""

    __tablename__ = "audit_chain"
    name: Mapped[str] = mapped_column(String(40), primary_key=True)  # "deployment"
    genesis: Mapped[str] = mapped_column(String(64))
    writer: Mapped[str] = mapped_column(Text, default="")  # host:directory of the writer that registered it
    registered_at: Mapped[datetime] = mapped_column(default=utcnow)


class Store:
    """Database handle: short transactions, one per journal write, so each transition is durable before the next."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("postgresql+psycopg"):
            from agent.extras import require
            require("psycopg", "database " + url.split("://")[0])
        if url.startswith("sqlite:///"):
            Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(url, future=True,
                                            connect_args={"timeout": 30} if url.startswith("sqlite") else {})
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        from agent.migrations import ensure_schema
        ensure_schema(self.engine)  # Alembic: a new journal is created, an older one upgraded (docs/migrations.md)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    def next_seq(self, s: Session) -> int:
        """The next journal order number, unique across processes: SQLite serialises writers by itself; on
        PostgreSQL two read-committed transactions would both read the same maximum, so a transaction-scoped
        advisory lock (released at commit) makes taking the number and inserting the row one step."""
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(7781001)"))  # 7781001: the journal's seq lock
        last = s.scalar(select(Action.seq).order_by(Action.seq.desc()).limit(1))
        return (last or 0) + 1

    def close(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
