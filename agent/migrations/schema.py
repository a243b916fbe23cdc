"""What the migrations describe: the journal's models and the daemon's intake table, not APScheduler's jobs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import MetaData

__all__ = ["FOREIGN_TABLES", "include_object", "target_metadata"]

# Tables other libraries create and migrate themselves on the same database (APScheduler's SQLAlchemyJobStore).
FOREIGN_TABLES = frozenset({"apscheduler_jobs"})


def target_metadata() -> list[MetaData]:
    import agent.daemon_models  # noqa: F401 (its tables are on Base.metadata once it is imported)
    from agent.workers import models  # noqa: F401 (the same: the site reads' table)
    from agent.intake.tables import IntakeBase
    from agent.store import Base
    return [Base.metadata, IntakeBase.metadata]


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    if type_ == "table":
        return name not in FOREIGN_TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name not in FOREIGN_TABLES
