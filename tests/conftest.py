"""Whole-session hooks: the time each test folder took, printed at the end of every run (CI reads it).

Why: CI has a fixed budget (30 minutes for the suite) and many helpers add suites at once; a line per folder in the
CI log shows which folder grew without anyone running ``--durations`` by hand. The sum covers setup, call and
teardown, so a session-scoped lab built by a folder's first test is charged to that folder. With pytest-xdist the
reports reach the controller with their durations, so the same table shows summed worker time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest

def _private_state_dir() -> None:
    """Every agent this session starts (in-process or as a child) keeps its default journal, evidence and audit
    log in a private folder (``$AGENT_STATE_DIR``, agent/paths.py), never in the machine's
    /var/lib/containment-agent and /var/log/containment-agent: tests run as root would otherwise share — and
    migrate — whatever journal another checkout or a real agent keeps there.

    Under pytest-xdist each worker gets a folder of its own: the workers inherit the controller's environment
    (its folder included), and two workers' agents sharing one default journal would see each other's actions."""
    import atexit
    import os
    import shutil
    import tempfile

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if os.environ.get("AGENT_STATE_DIR") and not worker:
        return
    folder = tempfile.mkdtemp(prefix=f"agent-test-state-{worker + '-' if worker else ''}")
    os.environ["AGENT_STATE_DIR"] = folder
    atexit.register(shutil.rmtree, folder, True)


_private_state_dir()

_SECONDS: dict[str, float] = defaultdict(float)
_COUNTS: dict[str, int] = defaultdict(int)


def folder_of(nodeid: str) -> str:
    """``tests/integration/ad/test_x.py::T::t`` → ``integration/ad``; ``tests/unit/test_y.py::t`` → ``unit``."""
    parts = PurePosixPath(nodeid.split("::", 1)[0]).parts
    if parts and parts[0] == "tests":
        parts = parts[1:]
    dirs = parts[:-1]
    if not dirs:
        return "."
    return "/".join(dirs[:2]) if dirs[0] == "integration" else dirs[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    folder = folder_of(report.nodeid)
    _SECONDS[folder] += report.duration
    if report.when == "call" or (report.when == "setup" and report.skipped):
        _COUNTS[folder] += 1


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _SECONDS:
        return
    terminalreporter.write_sep("-", "time per test folder (setup + call + teardown)")
    width = max(len(name) for name in _SECONDS)
    for name, secs in sorted(_SECONDS.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{name:<{width}}  {secs:8.1f} s  {_COUNTS[name]:5d} tests")
    total, count = sum(_SECONDS.values()), sum(_COUNTS.values())
    terminalreporter.write_line(f"{'total':<{width}}  {total:8.1f} s  {count:5d} tests")


# Addresses the tests name (10.x inventories of fake or absent hosts, documentation ranges) must never leave the
# machine, even when a test is wrong and a real connector tries one: while the session runs, the root namespace
# routes them into a blackhole (lab namespaces have their own routes and are not affected). Only where it cannot
# break someone's network: as root in CI, or when AGENT_TEST_BLACKHOLE=1 asks for it.
# The /16s the tests' inventories use — not all of 10/8 and not the documentation ranges: on build machines the
# resolver (10.255.255.53 here) and package mirrors (pypi.org resolved to 203.0.113.80 here) can live there, and a
# blackhole over them breaks every install on the machine. Resolvers are skipped explicitly as well.
_BLACKHOLES = ("10.0.0.0/16", "10.1.0.0/16", "10.9.0.0/16", "10.20.0.0/16", "10.30.0.0/16", "10.66.0.0/16")


def _resolvers() -> list[str]:
    try:
        with open("/etc/resolv.conf", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    return [line.split()[1] for line in lines if line.startswith("nameserver") and len(line.split()) > 1]


@pytest.fixture(scope="session", autouse=True)
def _no_test_address_leaves_the_machine() -> Iterator[list[str] | None]:
    import os
    import shutil
    import subprocess

    wanted = os.environ.get("CI") == "true" or os.environ.get("AGENT_TEST_BLACKHOLE") == "1"
    ip = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin")
    if not wanted or os.geteuid() != 0 or ip is None:
        yield None
        return
    import ipaddress

    resolvers = [ipaddress.ip_address(r) for r in _resolvers() if r.replace(".", "").isdigit()]
    added = []
    for net in _BLACKHOLES:
        if any(r in ipaddress.ip_network(net) for r in resolvers):
            continue  # never cut the machine's own name service
        present = subprocess.run([ip, "route", "show", "type", "blackhole", net], capture_output=True, text=True,
                                 check=False).stdout.strip()
        if not present and subprocess.run([ip, "route", "add", "blackhole", net], capture_output=True,
                                          check=False).returncode == 0:
            added.append(net)
    yield added
    # left in place: another test session on this machine may still rely on them (they only drop test ranges)
