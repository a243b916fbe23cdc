"""The planner's account lookup (agent/identify.py: names → objectGUID before the plan is shown) for a directory at
a worker site goes to a worker of that site (docs/architecture.md, decision 1): the central holds no directory
credentials; the worker's reader (agent/workers/reader.py) calls the connector's read-only ``identify`` with its
own and journals the answer once. A protected account found by the worker refuses the whole command centrally.
The round trip runs here on SQLite, the message "delivered" by calling the worker's reader directly (the real
broker, PostgreSQL and workers: tests/integration/test_site_workers.py). Fails before: a central without the
directory's credentials skipped the lookup (names matched by spelling only)."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent.errors import AgentError, GuardRefused
from agent.identify import _lookup
from agent.store import Store
from agent.workers.config import WorkersConfig
from agent.workers.models import SiteRead
from agent.workers.reader import SiteReader
from agent.workers.reads import SiteReads

GUIDS = {"jdoe": "6F1C9A2E-0000-4000-8000-00000000000A", "o'brien": "6F1C9A2E-0000-4000-8000-00000000000B"}


class Directory:
    """The connector's read-only side as the worker sees it: ``open`` needs credentials, ``identify`` answers."""

    def __init__(self) -> None:
        self.opened_with: list[Any] = []

    def open(self, target: Any, creds: Any, ctx: Any) -> Any:
        self.opened_with.append(creds)
        return SimpleNamespace(close=lambda: None)

    def identify(self, session: Any, names: list[str]) -> list[dict[str, str] | None]:
        out: list[dict[str, str] | None] = []
        for name in names:
            if name == "administrator":
                out.append({"problem": "protected_account", "message": "protected by SID S-1-5-21-1-500"})
            else:
                out.append({"objectGUID": GUIDS[name]} if name in GUIDS else None)
        return out


def entry(credentials: Any) -> Any:
    return SimpleNamespace(name="lab-ad", site="boston", connector="active_directory", credentials=credentials,
                           target=lambda address: SimpleNamespace(address=address or "10.77.17.20",
                                                                  connector="active_directory"))


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    store = Store(f"sqlite:///{tmp_path}/j.db")
    cfg = WorkersConfig(broker="amqp://x@127.0.0.1:1/", sites=("boston",), lease=5)
    conn = Directory()
    creds = SimpleNamespace(resolve=lambda: "the worker's own directory credentials")
    worker_app = SimpleNamespace(store=store, audit=SimpleNamespace(record=lambda event, **f: f), ctx=None,
                                 inventory=SimpleNamespace(directory=lambda name: entry(creds)),
                                 registry=SimpleNamespace(get=lambda name: conn))
    worker = SimpleNamespace(app=worker_app, site="boston", owner="wk1:4711:1", cfg=cfg, stopping=threading.Event(),
                             _lock=threading.Lock(), _running=set())
    reader = SiteReader(worker)  # type: ignore[arg-type]  # the parts of a SiteWorker a resolve step uses
    # the broker delivers the message to a worker of the site, which reads it
    monkeypatch.setattr(SiteReads, "_send", lambda self, site, read_id: threading.Thread(
        target=reader.execute, args=(read_id,)).start())
    settings = SimpleNamespace(workers=cfg, connect_timeout=2.0, command_timeout=5.0, retries=1)
    planner = SimpleNamespace(settings=settings, store=store, ctx=None, registry=SimpleNamespace(get=lambda n: conn))
    yield planner, store, conn
    store.close()


def test_accounts_are_looked_up_by_the_directory_sites_worker(deployment):
    planner, store, conn = deployment
    plan = SimpleNamespace(notes=[])
    found = _lookup(planner, plan, entry(None), "10.77.17.20", ["jdoe", "o'brien", "nobody"])  # type: ignore[arg-type]
    assert found == {"jdoe": "guid:6f1c9a2e-0000-4000-8000-00000000000a",
                     "o'brien": "guid:6f1c9a2e-0000-4000-8000-00000000000b"}, plan.notes
    assert conn.opened_with == ["the worker's own directory credentials"]  # the central had none
    with store.session() as s:
        [read] = s.query(SiteRead).all()
        assert (read.kind, read.state, read.owner, read.target) == ("identify", "done", "wk1:4711:1", "lab-ad")


def test_a_protected_account_found_by_the_worker_refuses_the_command(deployment):
    planner, _store, _conn = deployment
    with pytest.raises(GuardRefused, match="resolve.* to a protected account; nothing was changed"):
        _lookup(planner, SimpleNamespace(notes=[]), entry(None), "10.77.17.20",  # type: ignore[arg-type]
                ["jdoe", "administrator"])


@pytest.mark.parametrize("dry_run", [False, True])
def test_no_worker_of_the_site_refuses_a_real_run_and_notes_a_dry_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       dry_run: bool):
    """Nobody takes the lookup (no worker of the site): a real run is refused before anything is journaled, since
    the names could not be checked against protected accounts and the changes would wait for a worker nobody runs;
    a dry run says so in its notes. Fails before: the real run planned on, names unchecked (a note only)."""
    store = Store(f"sqlite:///{tmp_path}/j.db")
    monkeypatch.setattr(SiteReads, "_send", lambda self, site, read_id: None)  # queued; no worker ever takes it
    cfg = WorkersConfig(broker="amqp://x@127.0.0.1:1/", sites=("boston",), lease=1)
    settings = SimpleNamespace(workers=cfg, connect_timeout=0.2, command_timeout=1.0, retries=1)
    planner = SimpleNamespace(settings=settings, store=store, ctx=None, dry_run=dry_run,
                              registry=SimpleNamespace(get=lambda n: Directory()))
    plan = SimpleNamespace(notes=[])
    try:
        if dry_run:
            assert _lookup(planner, plan, entry(None), "10.77.17.20", ["o'brien"]) == {}  # type: ignore[arg-type]
            [note] = plan.notes
            assert "no worker of site boston took the account lookup of lab-ad" in note
        else:
            with pytest.raises(AgentError, match=r"^refused: no worker of site boston took the account lookup of "
                                                 r"lab-ad .* nothing was journaled or sent; start `agent worker "
                                                 r"--site boston`"):
                _lookup(planner, plan, entry(None), "10.77.17.20", ["o'brien"])  # type: ignore[arg-type]
    finally:
        store.close()
