"""The journal's schema, versioned with Alembic: every store upgrades itself to :data:`HEAD` when it is opened.

Why a constant here: opening the store happens on every CLI command, and importing Alembic costs ~0.3 s. The
common case — the database is already at HEAD — is one ``SELECT`` against ``alembic_version`` and no Alembic
import. ``tests/unit/test_migrations.py`` fails if HEAD is not the single head of ``versions/``, so a new
revision cannot be forgotten here. How to add one: docs/migrations.md.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

__all__ = ["HEAD", "current_revision", "ensure_schema"]

HEAD = "0009_site_reads"


def current_revision(engine: Engine) -> str | None:
    """The revision the database says it is at; None for a new database or one written before Alembic."""
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars().all()
    except DBAPIError:  # no such table: a new journal, or one created by the pre-Alembic create_all
        return None
    return str(rows[0]) if len(rows) == 1 else None


def ensure_schema(engine: Engine) -> None:
    """Bring the database to HEAD (no-op when it is there already); safe to call from concurrent processes."""
    if current_revision(engine) == HEAD:
        return
    from agent.migrations.runner import upgrade
    upgrade(engine)
