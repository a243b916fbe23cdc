"""The journal on a real PostgreSQL (the multi-node database): migrations, items, concurrent first opens.

A private server per test module: initdb into a temp dir as the ``postgres`` user (initdb refuses root), listening
on 127.0.0.1 at a free port and a socket in the temp dir, stopped by its PID file at teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.migrations import HEAD, current_revision
from agent.migrations.__main__ import schema_diff
from agent.runbook import find_runbook
from agent.store import Store
from tests.unit.engine_env import make_env

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    if BIN is None or not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL is not installed: scripts/install-system.sh")
    if os.geteuid() != 0:
        pytest.skip("starting a private PostgreSQL as the postgres user needs root")
    base = Path(tempfile.mkdtemp(prefix="journal-pg-"))  # not under pytest's root-only dir: postgres must enter it
    data = base / "data"
    shutil.chown(base, "postgres", "postgres")
    port = _free_port()

    def as_pg(*argv: str) -> None:
        subprocess.run(list(argv), user="postgres", check=True, capture_output=True, cwd=str(base))

    as_pg(str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    as_pg(str(BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(base / "log"), "-o",
          f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={base} -c fsync=off", "start")
    try:
        as_pg(str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "journal")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/journal"
    finally:
        subprocess.run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], user="postgres",
                       capture_output=True, check=False, cwd=str(base))
        shutil.rmtree(base, ignore_errors=True)


def _fresh(pg: str, name: str) -> str:
    """A new database on the server for one test."""
    store = Store(pg)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    store.close()
    return pg.rsplit("/", 1)[0] + f"/{name}"


def test_models_equal_migrated_schema_on_postgres(pg):
    url = _fresh(pg, "fresh")
    store = Store(url)
    assert current_revision(store.engine) == HEAD
    store.close()
    assert schema_diff(url) == []


def test_concurrent_first_opens_on_postgres(pg):
    """Three processes open a new journal at once: one migrates (advisory lock), the others find it at HEAD."""
    url = _fresh(pg, "race")
    code = f"from agent.store import Store; Store({url!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    store = Store(url)
    assert current_revision(store.engine) == HEAD
    store.close()


def test_contain_and_release_journal_items_on_postgres(pg, tmp_path: Path):
    """The engine's journal (items, JSON snapshots, UTC times) round-trips on PostgreSQL."""
    url = _fresh(pg, "engine")
    app, world = make_env(tmp_path)
    app.settings.__dict__["database"] = url
    try:
        assert app.settings.database_url() == url
        engine = app.engine()
        engine.journal.open_incident("INC-PG", title="t", reason="t", requested_by=app.actor, trigger="cli")
        plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web1", "web2"],
                                   {"capture_evidence": False})
        assert engine.execute(plan, "INC-PG").status == "done"
        [row] = [r for r in app.planner().active_actions(None) if r.target == "web2"]
        undo = app.planner().build(find_runbook(app.settings.runbooks, "release-host"), ["web2"])
        assert engine.execute(undo, "INC-PG").status == "done"
        assert world.isolated == {"web1": True, "web2": False}
        assert [r.target for r in app.planner().active_actions(None)] == ["web1"] and row.expires_at is None
    finally:
        app.close()


def test_parallel_actions_get_distinct_journal_numbers_on_postgres(pg, tmp_path: Path):
    """Hosts run in parallel; each action's journal number (seq, the undo order) is unique. On PostgreSQL two
    read-committed transactions read the same maximum unless next_seq serialises them (failed before: {1, 2} for
    three actions)."""
    from sqlalchemy import select

    from agent.store import Action
    url = _fresh(pg, "seqs")
    app, _world = make_env(tmp_path)
    app.settings.__dict__["database"] = url
    try:
        engine = app.engine()
        engine.journal.open_incident("INC-SEQ", title="t", reason="t", requested_by=app.actor, trigger="cli")
        plan = app.planner().build(find_runbook(app.settings.runbooks, "isolate-host"), ["web1", "web2", "web3"],
                                   {"capture_evidence": False})
        assert engine.execute(plan, "INC-SEQ").status == "done"
        with app.store.session() as s:
            seqs = [r.seq for r in s.scalars(select(Action))]
        assert len(seqs) == 3 and len(set(seqs)) == 3, seqs
    finally:
        app.close()
