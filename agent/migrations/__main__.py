"""Developer commands for the journal schema.

    python -m agent.migrations new "add action items"   # autogenerate the next revision from the models
    python -m agent.migrations check                   # models == migrated schema? (exit 1 and the diff if not)
    python -m agent.migrations heads                   # the revision heads (there must be exactly one)

Both work on a throw-away SQLite database upgraded to the current head, never on a real journal.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from agent.migrations.runner import alembic_config, upgrade
from agent.migrations.schema import include_object, target_metadata


def schema_diff(url: str) -> list[object]:
    """Alembic's autogenerate comparison of the database at ``url`` with the models (empty = identical)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"include_object": include_object, "compare_type": True,
                                                         "target_metadata": target_metadata()})
            return list(compare_metadata(ctx, cast(Any, target_metadata())))  # a list works: Alembic's AutogenContext
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("new", "check", "heads"):
        print(__doc__, file=sys.stderr)
        return 2
    script = ScriptDirectory.from_config(alembic_config())
    if argv[0] == "heads":
        print("\n".join(script.get_heads()))
        return 0 if len(script.get_heads()) == 1 else 1
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'journal.db'}"
        engine = create_engine(url)
        upgrade(engine)
        if argv[0] == "check":
            diff = schema_diff(url)
            for d in diff:
                print(d)
            return 1 if diff else 0
        if len(argv) < 2 or not argv[1].strip():
            print("new: give a message, e.g. new \"add action items\"", file=sys.stderr)
            return 2
        number = 1 + max((int(r.revision[:4]) for r in script.walk_revisions() if r.revision[:4].isdigit()),
                         default=0)
        slug = re.sub(r"[^a-z0-9]+", "_", argv[1].lower()).strip("_")[:40]
        with engine.begin() as conn:
            cfg = alembic_config(conn)
            made = command.revision(cfg, message=argv[1], autogenerate=True, rev_id=f"{number:04d}_{slug}")
        engine.dispose()
        path = getattr(made, "path", made)
        print(f"wrote {path}\nnow: review it, set HEAD in agent/migrations/__init__.py, run "
              "tests/unit/test_migrations.py")
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
