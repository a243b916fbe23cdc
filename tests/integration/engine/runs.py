"""Helpers for engine tests on the lab: a private configuration, the `agent` command run cold or warm, states.

Cold runs start a fresh interpreter per command (``AGENT_NO_WARM=1``); warm runs hand the command to an
``agent warm`` server started for the test's configuration (its socket lives in the test's own run directory).
Both run the real console script from the lab's management host, exactly as a responder does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.lab import Lab

REPO = Path(__file__).resolve().parents[3]
AGENT = str(REPO / ".venv" / "bin" / "agent")


def private_config(lab: Lab, tmp: Path) -> Path:
    """A copy of the lab's configuration with its own journal, audit log, evidence and inventory in ``tmp``."""
    src = lab.config_dir
    (tmp / "inventory.yaml").write_text((src / "inventory.yaml").read_text())
    text = (src / "agent.yaml").read_text()
    state = str(lab.state_dir)
    for name in ("agent.db", "audit", "evidence"):
        text = text.replace(f'"{state}/{name}"', f'"{tmp}/{name}"')
    text = text.replace(f'"{src}/inventory.yaml"', f'"{tmp}/inventory.yaml"')
    (tmp / "agent.yaml").write_text(text)
    assert str(tmp / "agent.db") in text and str(tmp / "inventory.yaml") in text
    return tmp / "agent.yaml"


class Runner:
    """Runs `agent` for one configuration, cold or warm."""

    def __init__(self, lab: Lab, cfg: Path, mode: str) -> None:
        self.lab, self.cfg, self.mode = lab, cfg, mode
        self.run_dir = cfg.parent / "run"
        self.server: subprocess.Popen[str] | None = None

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, "AGENT_CONFIG": str(self.cfg), "NO_COLOR": "1", "AGENT_RUN_DIR": str(self.run_dir)}
        env.pop("AGENT_FAILPOINTS", None)
        if self.mode == "cold":
            env["AGENT_NO_WARM"] = "1"
        else:
            env.pop("AGENT_NO_WARM", None)
        return {**env, **(extra or {})}

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", f"{self.lab.prefix}-mgmt", AGENT, *args]

    def __call__(self, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout,
                              env=self.env(env), stdin=subprocess.DEVNULL, check=False)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(*args), env=self.env(env), text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def status(self) -> dict[str, Any]:
        res = self("status", "--json")
        assert res.returncode in (0, 4), res.stdout + res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]

    @contextmanager
    def serving(self, server_env: dict[str, str] | None = None) -> Iterator[Runner]:
        """Start the warm server for this configuration (a no-op when cold); ``server_env`` is the server's own."""
        if self.mode != "warm":
            yield self
            return
        env = {**self.env(), "AGENT_NO_WARM": "", **(server_env or {})}
        env.pop("AGENT_NO_WARM")
        self.server = subprocess.Popen([sys.executable, "-m", "agent.cli", "warm", "-c", str(self.cfg)], env=env,
                                       stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO)
        deadline = time.monotonic() + 30
        while not (self.run_dir.exists() and any(self.run_dir.glob("warm-*.sock"))):
            assert self.server.poll() is None, self.server.stderr.read() if self.server.stderr else ""
            assert time.monotonic() < deadline, "warm server did not start"
            time.sleep(0.05)
        try:
            yield self
        finally:
            self.server.terminate()
            self.server.wait(timeout=10)
            if self.server.stderr:
                self.server.stderr.close()


def ruleset(lab: Lab, host: str) -> str:
    return lab.exec(host, ["nft", "list", "ruleset"]).stdout


def wait_until(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
