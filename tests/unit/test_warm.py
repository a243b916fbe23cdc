"""The warm server runs CLI commands exactly like a cold start: same output, same exit code, caller's cwd."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unit.engine_env import make_env

AGENT = [sys.executable, "-m", "agent.cli"]


@pytest.fixture
def warm(tmp_path: Path):
    app, _ = make_env(tmp_path)
    app.close()
    run_dir = tmp_path / "run"
    env = {**os.environ, "AGENT_RUN_DIR": str(run_dir), "NO_COLOR": "1"}
    env.pop("AGENT_NO_WARM", None)
    cfg = str(tmp_path / "agent.yaml")
    server = subprocess.Popen([*AGENT, "warm", "-c", cfg], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not any(run_dir.glob("warm-*.sock")) if run_dir.exists() else True:
        assert server.poll() is None, server.stderr.read() if server.stderr else ""
        assert time.monotonic() < deadline, "warm server did not start"
        time.sleep(0.05)
    yield cfg, env, run_dir
    server.terminate()
    server.wait(timeout=10)
    if server.stderr:
        server.stderr.close()


def agent_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # the console-script path: main() without argv, so forwarding is attempted
    code = "import sys; from agent.cli import main; sys.argv[0] = 'agent'; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


class TestWarmServer:
    def test_same_result_as_cold(self, warm):
        """`status` and a refused `contain` give identical output and exit codes warm and cold."""
        cfg, env, run_dir = warm
        for args in (["status", "-c", cfg], ["contain", "--host", "dc1", "-c", cfg, "--yes"],
                     ["incidents", "list", "-c", cfg, "--json"]):
            hot = agent_cli(args, env)
            cold = agent_cli(args, {**env, "AGENT_NO_WARM": "1"})
            assert (hot.returncode, hot.stdout, hot.stderr) == (cold.returncode, cold.stdout, cold.stderr)
        assert agent_cli(["contain", "--host", "dc1", "-c", cfg, "--yes"], env).returncode == 3

    def test_socket_is_private(self, warm):
        """The socket is readable and writable by its owner only."""
        _, _, run_dir = warm
        sock = next(run_dir.glob("warm-*.sock"))
        assert oct(sock.stat().st_mode & 0o777) == "0o600"
