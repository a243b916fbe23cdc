"""Two ``agent daemon`` processes started at the same moment on a new PostgreSQL journal both come up (issue 19:
"two daemons … behind any load balancer"). APScheduler's SQLAlchemy job store creates its table when it starts
(``Table.create(checkfirst=True)``: look, then create — two daemons can both look before either creates, and the
second CREATE fails with UniqueViolation on ``pg_type``), so before this fix one of two daemons started together
died at start. Here six schedulers start at once on a real private PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from types import SimpleNamespace

import pytest

from agent.store import Store
from tests.integration.pg_server import PgServer, private_postgres_server


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with private_postgres_server("daemons-start-") as server:
        yield server


def test_schedulers_started_together_on_a_new_journal_all_start(pg: PgServer):
    from agent.scheduler import DaemonScheduler
    stores = [Store(pg.url) for _ in range(6)]  # one per daemon process (each its own connection pool)
    config = SimpleNamespace(sweep_interval=timedelta(hours=1), reverify_interval=timedelta(hours=1))
    scheds = [DaemonScheduler(SimpleNamespace(store=s, config=config)) for s in stores]  # type: ignore[arg-type]
    barrier, errors = threading.Barrier(len(scheds)), []

    def start(sched: DaemonScheduler) -> None:
        barrier.wait()
        try:
            sched.start(paused=True)  # a follower's start: the job store is opened (and its table made) all the same
        except Exception as exc:  # noqa: BLE001 - collected: the assertion shows which
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
    threads = [threading.Thread(target=start, args=(s,)) for s in scheds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert all(s.sched.running for s in scheds)
    finally:
        for s in scheds:
            if s.sched.running:
                s.sched.shutdown(wait=False)
        for st in stores:
            st.close()
