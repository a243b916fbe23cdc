"""Per-run identity: owners carry the process start time, so a dead owner's reused pid is not mistaken for it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from agent import runctx
from agent.runctx import Owner, current_owner, owner_alive, start_ticks


class TestOwner:
    def test_round_trip_and_legacy_form(self):
        """`host:pid:start` parses back; journals of older releases (`host:pid`) are still understood."""
        assert Owner.parse("h1:42:9001") == Owner("h1", 42, 9001)
        assert str(Owner("h1", 42, 9001)) == "h1:42:9001"
        assert Owner.parse("h1:42") == Owner("h1", 42, None)
        assert Owner.parse("") is None and Owner.parse("nonsense") is None

    def test_live_process_with_same_start_is_alive(self):
        """The parent of this test is alive under its own start time."""
        parent = os.getppid()
        assert owner_alive(f"{socket.gethostname()}:{parent}:{start_ticks(parent)}")
        assert owner_alive(f"{socket.gethostname()}:{parent}")  # legacy form: pid only

    def test_reused_pid_is_not_the_owner(self):
        """A live pid whose start time differs from the journaled one is another process: the owner is gone."""
        parent = os.getppid()
        assert not owner_alive(f"{socket.gethostname()}:{parent}:{start_ticks(parent) + 1}")

    def test_dead_and_foreign_owners(self):
        """An exited process, another host's owner and our own leftovers are not alive."""
        proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        assert not owner_alive(f"{socket.gethostname()}:{proc.stdout.strip()}:1")
        assert not owner_alive(f"elsewhere:{os.getppid()}:{start_ticks(os.getppid())}")
        assert not owner_alive(str(current_owner()))

    def test_warm_child_owner_is_the_client(self):
        """After adopt_client the owner is the client's pid and start time, not this process's."""
        try:
            runctx.adopt_client(os.getppid())
            assert current_owner() == Owner(socket.gethostname(), os.getppid(), start_ticks(os.getppid()))
        finally:
            runctx._CLIENT.clear()
        assert current_owner().pid == os.getpid()

    def test_failpoints_read_when_reached(self, monkeypatch):
        """AGENT_FAILPOINTS is read per call, not at import."""
        monkeypatch.setenv("AGENT_FAILPOINTS", "x,y:pause")
        assert runctx.armed() == {"x", "y:pause"}
        monkeypatch.delenv("AGENT_FAILPOINTS")
        assert runctx.armed() == frozenset()


class TestFailpointCatalogue:
    def test_every_failpoint_in_the_code_is_listed_and_every_listed_one_exists(self):
        """agent.failpoints.NAMES is exactly the set of names the code can stop at (crash tests rely on it)."""
        import re
        from pathlib import Path

        from agent.failpoints import NAMES
        root = Path(__file__).resolve().parents[2]
        used: set[str] = set()
        for path in [*(root / "agent").rglob("*.py"), *(root / "connectors").rglob("*.py")]:
            used |= set(re.findall(r"""_?failpoint\(["']([a-z0-9-]+)["']\)""", path.read_text()))
            used |= {f"{m}K" for m in re.findall(r"""_?failpoint\(f["']([a-z0-9-]+:)\{""", path.read_text())}
        assert used == set(NAMES)
