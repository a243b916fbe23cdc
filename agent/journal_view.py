"""Read-only view of the journal for ``agent status`` (and the console's proof column): what is contained, what
is unfinished or in doubt, and each action's read-backs — typed rows, no ORM.

Why not the mapped models (agent.store): on this machine ``import sqlalchemy`` alone costs ≈ 0.2 s and the mapped
journal models ≈ 0.3 s, more than the cold ``agent status`` budget (issue 21: ≤ 0.25 s). This module is the one
way status reads the journal, on every database: on a SQLite journal already at the schema head it runs the
queries below through the standard library's ``sqlite3``; on PostgreSQL, or a journal that must first be
created or upgraded, it runs the *same* SQL through the store's SQLAlchemy engine (:meth:`JournalView.of_store`).

Shared schema: the row classes' fields are the journal's column names (tests/unit/test_journal_view.py checks
them against the models, and the migrated schema equals the models), :func:`action_summary` and
:func:`item_summary` are what ``Action.summary()`` / ``ActionItem.summary()`` return, and the journal's schema
revision is checked to be the head (agent.migrations.HEAD) before anything is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.states import ACTIVE_STATES

if TYPE_CHECKING:
    from agent.store import Store

__all__ = ["ActionRow", "ItemRow", "JournalView", "action_summary", "item_summary", "open_view"]

Query = Callable[[str, Mapping[str, Any]], list[tuple[Any, ...]]]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


class _ItemLike(Protocol):
    @property
    def canonical(self) -> str: ...
    @property
    def requested(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def outcome(self) -> str: ...
    @property
    def changed(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def verification(self) -> dict[str, Any] | None: ...
    @property
    def undone_at(self) -> datetime | None: ...


def item_summary(item: _ItemLike) -> dict[str, Any]:
    """One item as ``--json`` shows it (``ActionItem.summary()`` returns this too)."""
    return {"canonical": item.canonical, "requested": item.requested, "kind": item.kind, "state": item.state,
            "outcome": item.outcome, "changed": item.changed, "error": item.error,
            "verification": item.verification, "undone_at": _iso(item.undone_at)}


class _ActionLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def incident_id(self) -> str: ...
    @property
    def runbook(self) -> str: ...
    @property
    def step(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def undo_of(self) -> str | None: ...
    @property
    def target(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def connector(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def changed(self) -> int | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def result(self) -> dict[str, Any] | None: ...
    @property
    def verification(self) -> dict[str, Any] | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def undone_at(self) -> datetime | None: ...
    @property
    def requested_by(self) -> str: ...
    @property
    def approved_by(self) -> str | None: ...
    @property
    def reason(self) -> str: ...
    @property
    def owner(self) -> str: ...


def action_summary(a: _ActionLike) -> dict[str, Any]:
    """One action as ``--json`` shows it (``Action.summary()`` returns this too)."""
    return {
        "id": a.id, "incident": a.incident_id, "runbook": a.runbook, "step": a.step,
        "kind": a.kind, "undo_of": a.undo_of, "target": a.target, "subject": a.subject,
        "address": a.address,
        "connector": a.connector, "action": a.action, "state": a.state, "changed": a.changed,
        "error": a.error, "error_kind": a.error_kind, "attempts": a.attempts,
        "result": a.result, "verification": a.verification,
        "created_at": _iso(a.created_at), "updated_at": _iso(a.updated_at),
        "expires_at": _iso(a.expires_at), "undone_at": _iso(a.undone_at),
        "requested_by": a.requested_by, "approved_by": a.approved_by, "reason": a.reason,
        "owner": a.owner,
    }


@dataclass(frozen=True)
class ItemRow:
    """A row of ``action_items`` (fields named as its columns)."""

    action_id: str
    position: int
    kind: str
    canonical: str
    requested: str
    state: str
    outcome: str
    changed: int | None
    verification: dict[str, Any] | None
    error: str | None
    undone_at: datetime | None

    def summary(self) -> dict[str, Any]:
        return item_summary(self)


@dataclass(frozen=True)
class ActionRow:
    """A row of ``actions`` (fields named as its columns) with its items in position order."""

    id: str
    seq: int
    incident_id: str
    runbook: str
    step: str
    kind: str
    undo_of: str | None
    target: str
    subject: str
    target_kind: str
    address: str
    connector: str
    action: str
    reversible: int
    mutating: int
    state: str
    result: dict[str, Any] | None
    verification: dict[str, Any] | None
    error: str | None
    error_kind: str | None
    attempts: int
    changed: int | None
    requested_by: str
    approved_by: str | None
    reason: str
    owner: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    undone_at: datetime | None
    items: tuple[ItemRow, ...] = ()

    def summary(self) -> dict[str, Any]:
        return action_summary(self)


_JSON = {"result", "verification"}  # JSON columns read here (SQLite hands them over as text)
_TIMES = {"created_at", "updated_at", "expires_at", "undone_at"}
ACTION_COLUMNS = tuple(f.name for f in fields(ActionRow) if f.name != "items")
ITEM_COLUMNS = tuple(f.name for f in fields(ItemRow))

# The statements (named parameters: sqlite3 takes them as they are, SQLAlchemy's text() binds them for PostgreSQL).
_SELECT_ACTIONS = f"SELECT {', '.join(ACTION_COLUMNS)} FROM actions"
# what is contained: applied, changed, not lifted since (per item for a batch: ActionRow.items)
CONTAINED = (f"{_SELECT_ACTIONS} WHERE kind = :apply AND state = :done AND undone_at IS NULL AND changed = 1 "
             "AND mutating = 1 ORDER BY seq")
UNFINISHED = (f"{_SELECT_ACTIONS} WHERE state IN ({', '.join(f':s{i}' for i in range(len(ACTIVE_STATES)))}) "
              "ORDER BY seq")
IN_DOUBT = f"{_SELECT_ACTIONS} WHERE state = :in_doubt AND undone_at IS NULL ORDER BY seq"


def _in(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    names = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return ", ".join(f":{n}" for n in names), names


def _time(value: Any) -> datetime | None:
    """A journal time as ``agent.store`` returns it: UTC-aware (SQLite stores it as naive ISO text)."""
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


class JournalView:
    """The read queries of ``agent status`` over one query function (sqlite3 or SQLAlchemy: same SQL), all in
    one read transaction, so the sections of one status agree with each other."""

    def __init__(self, query: Query, *, decoded: bool, close: Callable[[], None] = lambda: None) -> None:
        self._query = query
        self._decoded = decoded  # the driver already returns JSON as objects and times as datetime (PostgreSQL)
        self._close = close

    @classmethod
    def of_store(cls, store: Store) -> JournalView:
        """The same queries through an open store's engine (PostgreSQL; a journal the store just migrated)."""
        from sqlalchemy import text

        conn = store.engine.connect()
        conn.begin()

        def query(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in conn.execute(text(sql), dict(params))]

        return cls(query, decoded=store.engine.dialect.name != "sqlite", close=conn.close)

    def close(self) -> None:
        self._close()

    def _json(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) and not self._decoded else value

    def _actions(self, sql: str, params: Mapping[str, Any]) -> list[ActionRow]:
        raw = [dict(zip(ACTION_COLUMNS, row, strict=True)) for row in self._query(sql, params)]
        items = self._items([str(r["id"]) for r in raw])
        out = []
        for r in raw:
            for name in _JSON:
                r[name] = self._json(r[name])
            for name in _TIMES:
                r[name] = _time(r[name])
            out.append(ActionRow(**r, items=tuple(items.get(str(r["id"]), ()))))
        return out

    def _items(self, action_ids: Sequence[str]) -> dict[str, list[ItemRow]]:
        out: dict[str, list[ItemRow]] = {}
        if not action_ids:
            return out
        marks, params = _in("a", action_ids)
        sql = (f"SELECT {', '.join(ITEM_COLUMNS)} FROM action_items WHERE action_id IN ({marks}) "
               "ORDER BY position, id")
        for row in self._query(sql, params):
            r = dict(zip(ITEM_COLUMNS, row, strict=True))
            r["verification"] = self._json(r["verification"])
            r["undone_at"] = _time(r["undone_at"])
            out.setdefault(str(r["action_id"]), []).append(ItemRow(**r))
        return out

    def contained(self) -> list[ActionRow]:
        """Applied, changed and not undone: what may be in effect on the targets (lifting actions included:
        the caller asks the registry which actions lift)."""
        return self._actions(CONTAINED, {"apply": "apply", "done": "done"})

    def unfinished(self) -> list[ActionRow]:
        """Interrupted between intent and a final state (reconciled on the next run)."""
        return self._actions(UNFINISHED, {f"s{i}": s for i, s in enumerate(ACTIVE_STATES)})

    def in_doubt(self) -> list[ActionRow]:
        return self._actions(IN_DOUBT, {"in_doubt": "in_doubt"})

    def done_transitions(self, action_ids: Sequence[str]) -> list[tuple[str, str, datetime, str]]:
        """``(action_id, from_state, at, detail)`` of every transition into ``done`` of these actions, oldest
        first: the engine's verification and each later read-back (agent.proof)."""
        if not action_ids:
            return []
        marks, params = _in("a", action_ids)
        rows = self._query("SELECT action_id, from_state, at, detail FROM transitions "
                           f"WHERE action_id IN ({marks}) AND to_state = :done ORDER BY id",
                           {**params, "done": "done"})
        return [(str(a), str(f), _time(at) or datetime.min.replace(tzinfo=UTC), str(d or ""))
                for a, f, at, d in rows]


def _sqlite_path(url: str) -> str | None:
    """The file of a plain ``sqlite:///PATH`` URL (what ``database:`` paths become); None for anything else —
    also when SQLAlchemy would read the URL differently from its text ("?" starts its query string, "%XX" is
    unquoted), so the view never opens another file than the store would."""
    if not url.startswith("sqlite:///") or "?" in url or "%" in url:
        return None
    path = url[len("sqlite:///"):]
    return path if path and path != ":memory:" else None


def _at_head(path: str) -> Any:
    """An open sqlite3 connection to the journal if it exists and is at the schema head, else None."""
    import sqlite3

    from agent.migrations import HEAD
    # a URI (mode=rw: never creates a journal) with the path's own "#" escaped ("%" and "?" never get here)
    uri = "file:" + path.replace("#", "%23") + "?mode=rw"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        conn.execute("BEGIN")  # one read snapshot for every query of the command (WAL: writers are not blocked)
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    except sqlite3.Error:
        conn.close()
        return None
    if [tuple(r) for r in rows] != [(HEAD,)]:
        conn.close()
        return None
    return conn


def open_view(database_url: str, store: Callable[[], Store]) -> JournalView:
    """The journal's view for one command. ``store`` opens the full store (creates or upgrades the journal,
    imports SQLAlchemy); it is called only when the SQLite file is missing or not at the head, or on PostgreSQL.
    """
    path = _sqlite_path(database_url)
    conn = _at_head(path) if path else None
    if conn is None:
        return JournalView.of_store(store())

    def query(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in conn.execute(sql, dict(params)).fetchall()]

    def close() -> None:
        conn.rollback()  # nothing was written: end the read transaction
        conn.close()

    return JournalView(query, decoded=False, close=close)
