"""An outbreak drill on a 20-host lab (`agent lab up --hosts 20`), driven as a responder drives it: in a
pseudo-terminal, by tag, with the count confirmed; Ctrl-C in the middle leaves a journal that matches the hosts,
the next run finishes the job, and release restores every host."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.lab import Lab
from tests.integration.cli.test_contain_cli import AGENT
from tests.integration.conftest import _skip_unless_lab_possible, claim_prefix

pytestmark = [pytest.mark.root, pytest.mark.slow]
FLEET = [f"h{i:02d}" for i in range(1, 21)]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(scope="module")
def fleet_lab() -> Iterator[Lab]:
    _skip_unless_lab_possible()
    with claim_prefix("cif") as prefix:
        lab = Lab(prefix=prefix, fleet=20)
        lab.up(rebuild=True)
        try:
            yield lab
        finally:
            lab.down()


@pytest.fixture
def cfg(fleet_lab: Lab, tmp_path: Path) -> Path:
    fleet_lab.reset()
    text = (fleet_lab.config_dir / "agent.yaml").read_text()
    state = str(fleet_lab.state_dir)
    for name in ("agent.db", "audit", "evidence"):
        text = text.replace(f'"{state}/{name}"', f'"{tmp_path}/{name}"')
    # two hosts at a time: on a quiet machine eight at a time finished all 20 before Ctrl-C landed
    assert "max_parallel: 8" in text
    text = text.replace("max_parallel: 8", "max_parallel: 2")
    (tmp_path / "agent.yaml").write_text(text)
    return tmp_path / "agent.yaml"


def _env(cfg: Path) -> dict[str, str]:
    env = {**os.environ, "AGENT_CONFIG": str(cfg), "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    return env


def _agent(lab: Lab, cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-mgmt", AGENT, *args], capture_output=True,
                          text=True, timeout=180, env={**_env(cfg), "NO_COLOR": "1"}, stdin=subprocess.DEVNULL,
                          check=False)


def _contained(lab: Lab) -> set[str]:
    """Hosts whose ruleset is not the lab's empty baseline (read on the hosts, not from the journal)."""
    return {h for h in FLEET if lab.exec(h, ["nft", "list", "ruleset"]).stdout.strip()}


def _journal(lab: Lab, cfg: Path) -> tuple[set[str], set[str]]:
    res = _agent(lab, cfg, "status", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    active = {a["target"] for a in data["active"] if a["action"] == "isolate"}
    unfinished = {a["target"] for a in data["unfinished"] if a["action"] == "isolate"}
    return active, unfinished


def _pty_run(lab: Lab, cfg: Path, *args: str, timeout: float = 120,
             watch: Callable[[bytes, subprocess.Popen[bytes]], None] | None = None) -> tuple[int, str]:
    """Run the CLI on a 120×40 pseudo-terminal from the management host; (exit code, what the terminal got).

    ``watch(seen, proc)`` is called after every read (the Ctrl-C test interrupts from there)."""
    import fcntl
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(["ip", "netns", "exec", f"{lab.prefix}-mgmt", AGENT, *args], stdin=slave,
                            stdout=slave, stderr=slave, env=_env(cfg), start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if watch is not None:
            watch(seen, proc)
        if not ready and proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(master)
    return proc.returncode, seen.decode(errors="replace")


class TestOutbreakDrill:
    def test_plan_for_ten_hosts_fits_one_terminal(self, fleet_lab: Lab, cfg: Path):
        """On a 120×40 terminal the default dry-run plan for 10 hosts fits: ≤ 40 rows, none wider than 120."""
        code, text = _pty_run(fleet_lab, cfg, "contain", "--host", ",".join(FLEET[:10]), "--dry-run")
        assert code == 0, text
        rows = _ANSI.sub("", text).replace("\r", "").rstrip("\n").split("\n")
        assert len(rows) <= 40, "\n".join(rows)
        assert max(len(r) for r in rows) <= 120
        assert all(f"{h} (10.77.0.{100 + i})" in text for i, h in enumerate(FLEET[:10], 1))

    def test_tty_progress_ctrl_c_and_finish(self, fleet_lab: Lab, cfg: Path):
        lab = fleet_lab
        interrupted: list[bool] = []

        def ctrl_c(seen: bytes, proc: subprocess.Popen[bytes]) -> None:
            if not interrupted and b"isolate            done" in seen:
                os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's foreground group
                interrupted.append(True)

        code, text = _pty_run(lab, cfg, "contain", "--tag", "fleet", "--yes", "--count", "20", "--reason",
                              "outbreak drill", watch=ctrl_c)
        assert interrupted, text[-2000:]
        assert code == 130, text[-2000:]
        assert "\x1b[2K" in text and re.search(r"\x1b\[\d+F", text), "the board never redrew in place"
        plain = _ANSI.sub("", text)
        wide = [line for line in plain.splitlines() if len(line) > 120]
        assert not wide, wide
        assert "the journal is consistent" in plain

        real = _contained(lab)
        active, unfinished = _journal(lab, cfg)
        assert 0 < len(real) < 20, "Ctrl-C should land mid-run in this drill"
        assert active <= real, f"journal says contained but host is open: {sorted(active - real)}"
        assert real <= active | unfinished, f"host isolated without a journal record: {sorted(real - active)}"

        res = _agent(lab, cfg, "contain", "--tag", "fleet", "--yes", "--count", "20", "--reason", "again")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr
        assert _contained(lab) == set(FLEET)
        active, unfinished = _journal(lab, cfg)
        assert active == set(FLEET) and not unfinished

        res = _agent(lab, cfg, "release", "--tag", "fleet", "--yes", "--count", "20")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr
        assert _contained(lab) == set()
        assert _journal(lab, cfg) == (set(), set())
