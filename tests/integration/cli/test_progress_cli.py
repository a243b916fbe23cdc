"""Live progress as a responder and a script see it, on the real lab: the NDJSON event stream covers every journal
transition of every action, and a terminal gets a board that updates in place."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from agent.lab import Lab
from tests.integration.cli import test_contain_cli as base
from tests.integration.cli.test_contain_cli import AGENT, agent

cfg = base.cfg  # the same private copy of the lab's configuration (a fixture)

pytestmark = pytest.mark.root


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class TestEventStream:
    def test_every_transition_is_an_event(self, clean_lab: Lab, cfg: Path, tmp_path: Path):
        """`--events -`: plan first, then intent → snapshotted → applying → verifying → done per action, then the
        result; every line parses; the same for the release written to a file."""
        res = agent(clean_lab, cfg, "contain", "--host", "victim", "--yes", "--reason", "t", "--events", "-")
        assert res.returncode == 0, res.stderr + res.stdout
        events = _events(res.stdout)
        assert events[0]["event"] == "plan" and events[-1]["event"] == "result"
        assert events[-1]["status"] == "done"
        by_action: dict[str, list[str]] = {}
        for e in events:
            if e["event"] == "transition":
                by_action.setdefault(e["action_id"], []).append(e["to_state"])
        planned = {a["action_id"] for a in events[0]["plan"]["actions"]}
        assert set(by_action) == planned
        reversible = {a["action_id"] for a in events[0]["plan"]["actions"] if a["reversible"]}
        assert reversible, "the isolate action is missing from the plan"
        for action_id, states in by_action.items():
            assert states[0] == "intent" and states[-1] == "done", states
            if action_id in reversible:  # changes are snapshotted first and read back after
                assert "snapshotted" in states and "verifying" in states, states
        out = tmp_path / "release.ndjson"
        res = agent(clean_lab, cfg, "release", "--host", "victim", "--yes", "--events", str(out))
        assert res.returncode == 0, res.stderr + res.stdout
        assert "Result:" in res.stdout  # the human output stays when events go to a file
        rel = _events(out.read_text())
        assert rel[-1]["event"] == "result" and rel[-1]["status"] == "done"
        assert any(e.get("kind") == "undo" and e.get("to_state") == "done" for e in rel)


class TestTerminalBoard:
    def test_board_updates_in_place_on_a_tty(self, clean_lab: Lab, cfg: Path):
        """On a pseudo-terminal the board redraws (cursor-up sequences) through the phases to done, then the
        result lines and the summary follow."""
        master, slave = pty.openpty()
        env = {**os.environ, "AGENT_CONFIG": str(cfg), "TERM": "xterm", "COLUMNS": "120"}
        env.pop("NO_COLOR", None)
        proc = subprocess.Popen(["ip", "netns", "exec", f"{clean_lab.prefix}-mgmt", AGENT, "contain", "--host",
                                 "victim", "--yes", "--reason", "t"], stdin=slave, stdout=slave, stderr=slave,
                                env=env, close_fds=True)
        os.close(slave)
        chunks: list[bytes] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
        os.close(master)
        text = b"".join(chunks).decode(errors="replace")
        assert proc.returncode == 0, text
        assert "\x1b[2K" in text and "F\x1b[2K" in text, "the board never redrew in place"
        assert "verifying" in text and "done" in text
        assert "Result:" in text
        res = agent(clean_lab, cfg, "release", "--host", "victim", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
