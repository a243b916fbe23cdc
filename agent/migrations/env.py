"""Alembic environment: always run by :mod:`agent.migrations.runner` on a connection it passes in."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from agent.migrations.schema import include_object, target_metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through agent.migrations (python -m agent.migrations), not the alembic CLI")


def _render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Write model-only column types as the plain SQL type they decorate: a migration must not import models."""
    from sqlalchemy.types import TypeDecorator
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{type(obj.impl_instance).__name__}()"
    return False


def _run(conn: Any) -> None:
    context.configure(connection=conn, target_metadata=target_metadata(), include_object=include_object,
                      render_as_batch=True, compare_type=True, transactional_ddl=True, render_item=_render_item)
    with context.begin_transaction():
        context.run_migrations()


_run(connection)
