"""Shared fixtures for integration tests that need the practice lab (real hosts in network namespaces).

``lab``        session-scoped, built once per test session (prefix ``cit``; ``cit2``… when another session
               holds ``cit``), torn down at the end.
``clean_lab``  the same lab, restored to its baseline before and after the test (no nftables/iptables rules
               anywhere, no tracked connections; rebuilt if a daemon died).
``spare_lab``  a second, not-yet-built lab with its own prefix (``cil``…) for tests of the lab's own life cycle.
``in_mgmt(lab)`` context manager: the calling thread acts from the management host (prefer ``lab.enter("mgmt")``
               in other directories: conftest modules are not meant to be imported).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab, netns
from tests.alone import Gate
from tests.slots import claim

REPO = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long files first when the suite runs on several pytest-xdist workers.

    Why: ``make test`` hands each integration test file to one of two workers (``--dist loadfile
    --no-loadscope-reorder``: module- and session-scoped labs and servers stay whole) in collection order. A file
    of a few minutes collected last keeps one worker busy long after the other has run out of work, so files with
    a test marked ``slow`` are handed out first. Every file's own order, and the order among the slow files and
    among the others, is kept. A run in one process (no worker) keeps pytest's order."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    first: dict[Path, int] = {}
    for index, item in enumerate(items):
        first.setdefault(item.path, index)
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: (item.path not in slow, first[item.path]))


_GATE: list[Gate] = []


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    """Under pytest-xdist, a test marked ``alone`` runs while no other test of the session runs (tests/alone.py);
    outermost (tryfirst), so the wait is not counted against the test's own pytest-timeout."""
    basetemp = item.config.option.basetemp
    if not os.environ.get("PYTEST_XDIST_WORKER") or not basetemp:
        yield
        return
    if not _GATE:
        _GATE.append(Gate(Path(basetemp).parent))
    with _GATE[0].enter(item.get_closest_marker("alone") is not None):
        yield


def pytest_unconfigure() -> None:
    while _GATE:
        _GATE.pop().close()


def _skip_unless_lab_possible() -> None:
    if os.geteuid() != 0:
        pytest.skip("the practice lab needs root (network namespaces): run the tests as root")
    missing = [tool for tool in ("ip", "sshd", "ssh-keygen", "nsenter", "unshare", "nft", "iptables", "conntrack")
               if shutil.which(tool, path=netns.SBIN_PATH) is None]
    if missing:
        pytest.skip(f"the practice lab needs {', '.join(missing)}: run scripts/install-system.sh")


@contextlib.contextmanager
def claim_prefix(base: str) -> Iterator[str]:
    """Hold an exclusive lock on the first free prefix of ``base``, ``base2`` … ``base9`` (parallel sessions)."""
    with claim([base] + [f"{base}{i}" for i in range(2, 10)], "lab prefixes") as prefix:
        yield prefix


@contextlib.contextmanager
def in_mgmt(lab: Lab) -> Iterator[None]:
    """Run the ``with`` block's socket work from the lab's management host (thread-level netns enter)."""
    with lab.enter("mgmt"):
        yield


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The practice lab, built afresh once per session and torn down at its end."""
    _skip_unless_lab_possible()
    with claim_prefix("cit") as prefix:
        the_lab = Lab(prefix=prefix)
        the_lab.up(rebuild=True)
        try:
            yield the_lab
        finally:
            the_lab.down()


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    """The session lab at its baseline: no firewall rules, no tracked flows, every daemon running."""
    if not lab.is_up():
        lab.up()
    lab.reset()
    yield lab
    lab.reset()


@pytest.fixture
def spare_lab() -> Iterator[Lab]:
    """A second lab (not built) for life-cycle tests; always torn down afterwards."""
    _skip_unless_lab_possible()
    with claim_prefix("cil") as prefix:
        spare = Lab(prefix=prefix)
        try:
            yield spare
        finally:
            spare.down()
