"""A private PostgreSQL server for tests (the multi-node database), shared by every PostgreSQL test module.

initdb into a temp dir as the ``postgres`` user (initdb refuses root), listening on 127.0.0.1 at a free port and
a socket in the temp dir, stopped by its PID file at the end (``pg_ctl stop -m immediate``) — nothing depends on
a system service.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.store import Store

BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)

__all__ = ["BIN", "fresh_database", "private_postgres"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def private_postgres(prefix: str = "agent-pg-") -> Iterator[str]:
    """Start a server; yield the SQLAlchemy URL of its database ``journal``; stop it. Skips the test when
    PostgreSQL is not installed or the test does not run as root (needed to run it as ``postgres``)."""
    if BIN is None or not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL is not installed: scripts/install-system.sh")
    if os.geteuid() != 0:
        pytest.skip("starting a private PostgreSQL as the postgres user needs root")
    base = Path(tempfile.mkdtemp(prefix=prefix))  # not under pytest's root-only dir: postgres must enter it
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


def fresh_database(pg: str, name: str) -> str:
    """A new, empty database on the server for one test; returns its URL."""
    store = Store(pg)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    store.close()
    return pg.rsplit("/", 1)[0] + f"/{name}"
