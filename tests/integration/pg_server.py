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

__all__ = ["BIN", "PgServer", "fresh_database", "private_postgres", "private_postgres_server"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One private server: ``url`` of its database ``journal``; :meth:`stop` / :meth:`start` (same data dir) to
    make it unreachable and bring it back. With ``netns``, it runs inside that network namespace (its loopback)."""

    def __init__(self, base: Path, netns: str | None, host: str = "127.0.0.1") -> None:
        self.base, self.netns, self.data, self.host = base, netns, base / "data", host
        self.port = _free_port()
        self.url = f"postgresql+psycopg://postgres@{host}:{self.port}/journal"

    def as_pg(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        if self.netns:  # setns needs root: enter the namespace first, then drop to postgres
            return subprocess.run(["ip", "netns", "exec", self.netns, "runuser", "-u", "postgres", "--", *argv],
                                  check=check, capture_output=True, cwd=str(self.base))
        return subprocess.run(list(argv), user="postgres", check=check, capture_output=True, cwd=str(self.base))

    def start(self) -> None:
        assert BIN is not None
        self.as_pg(str(BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.base / "log"), "-o",
                   f"-c listen_addresses={self.host} -c port={self.port} -c unix_socket_directories={self.base} "
                   "-c fsync=off", "start")

    def stop(self) -> None:
        assert BIN is not None
        self.as_pg(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False)


@contextmanager
def private_postgres_server(prefix: str = "agent-pg-", netns: str | None = None, host: str = "127.0.0.1"
                            ) -> Iterator[PgServer]:
    """Start a server; yield it; stop it. Skips the test when PostgreSQL is not installed or the test does not
    run as root (needed to run it as ``postgres``). ``host``: the listen address (loopback, or a lab address
    inside ``netns``)."""
    if BIN is None or not (BIN / "initdb").exists():
        pytest.skip("PostgreSQL is not installed: scripts/install-system.sh")
    if os.geteuid() != 0:
        pytest.skip("starting a private PostgreSQL as the postgres user needs root")
    base = Path(tempfile.mkdtemp(prefix=prefix))  # not under pytest's root-only dir: postgres must enter it
    shutil.chown(base, "postgres", "postgres")
    server = PgServer(base, netns, host)
    server.as_pg(str(BIN / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync")
    if host != "127.0.0.1":  # the lab's hosts on the listen address's own subnet (pg_hba.conf: samenet)
        with open(server.data / "pg_hba.conf", "a", encoding="utf-8") as hba:
            hba.write("host all all samenet trust\n")
    server.start()
    try:
        server.as_pg(str(BIN / "createdb"), "-h", host, "-p", str(server.port), "-U", "postgres", "journal")
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def private_postgres(prefix: str = "agent-pg-") -> Iterator[str]:
    """Start a server; yield the SQLAlchemy URL of its database ``journal``; stop it (see
    :func:`private_postgres_server`)."""
    with private_postgres_server(prefix) as server:
        yield server.url


def fresh_database(pg: str, name: str) -> str:
    """A new, empty database on the server for one test; returns its URL."""
    store = Store(pg)
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    store.close()
    return pg.rsplit("/", 1)[0] + f"/{name}"
