"""Runs Alembic against the store's database: one transaction, serialised across processes.

Why a separate engine for SQLite: Python's sqlite3 module commits implicitly before DDL, so a migration killed
half-way (a batch ALTER is create/copy/drop/rename) could leave a table missing. Here the driver's own
transaction handling is off and the whole upgrade runs inside ``BEGIN IMMEDIATE`` — SQLite's DDL is transactional,
and the write lock makes a second process that opens the same journal wait, then find it at HEAD and do nothing.
Foreign keys stay off during the upgrade, as Alembic's batch mode needs (a table rebuilt while they are on would
cascade or fail): https://alembic.sqlalchemy.org/en/latest/batch.html#dealing-with-referencing-foreign-keys
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine

from agent.errors import AgentError

__all__ = ["SchemaError", "alembic_config", "upgrade"]

_HERE = Path(__file__).resolve().parent


class SchemaError(AgentError):
    """The journal cannot be brought to this agent's schema (e.g. it was written by a newer agent)."""


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    cfg.set_main_option("version_locations", str(_HERE / "versions"))
    cfg.set_main_option("file_template", "%%(rev)s")  # the revision id already carries the slug
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine) -> None:
    """Upgrade to the newest revision; stamps nothing by hand — the baseline itself adopts pre-Alembic journals."""
    with _migration_connection(engine) as conn:
        cfg = alembic_config(conn)
        script = ScriptDirectory.from_config(cfg)
        for rev in MigrationContext.configure(conn).get_current_heads():
            try:
                script.get_revision(rev)
            except CommandError:
                raise SchemaError(
                    f"journal {engine.url.render_as_string(hide_password=True)} is at schema revision {rev!r}, "
                    f"which this agent does not know (its newest is {script.get_current_head()!r}): it was "
                    "written by a newer agent; upgrade the agent, nothing was changed") from None
        command.upgrade(cfg, "head")


@contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        # An in-memory SQLite database exists only on the store's own connection; other databases have
        # transactional DDL already. PostgreSQL: an advisory lock serialises concurrent upgraders.
        with engine.begin() as conn:
            if url.get_backend_name() == "postgresql":
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7243016)")
            yield conn
        return
    migrator = create_engine(url, connect_args={"timeout": 30})
    event.listen(migrator, "connect", _manual_transactions)
    event.listen(migrator, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    try:
        with migrator.begin() as conn:
            yield conn
    finally:
        migrator.dispose()


def _manual_transactions(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # the driver stops issuing its own BEGIN/COMMIT around DDL
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.close()
