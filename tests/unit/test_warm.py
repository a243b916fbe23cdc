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
                          timeout=60, stdin=subprocess.DEVNULL, check=False)


class TestWarmServer:
    def test_same_result_as_cold(self, warm):
        """`status` and a refused `contain` give identical output and exit codes warm and cold."""
        cfg, env, _run_dir = warm
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


def _start_server(cfg: str, env: dict[str, str], run_dir: Path, stdout: int) -> subprocess.Popen[str]:
    server = subprocess.Popen([*AGENT, "warm", "-c", cfg], env=env, stdout=stdout, stderr=subprocess.DEVNULL,
                              text=True)
    deadline = time.monotonic() + 20
    while not (run_dir.exists() and any(run_dir.glob("warm-*.sock"))):
        assert server.poll() is None and time.monotonic() < deadline, "warm server did not start"
        time.sleep(0.05)
    return server


class TestPerRequestTerminal:
    """Colour follows the *client's* standard output and environment, never the server's (issue 12)."""

    def test_status_to_a_file_has_no_colour_when_the_server_has_a_terminal(self, tmp_path: Path):
        """`agent status > file` is plain text warm, even when the warm server itself writes to a terminal."""
        import pty

        app, _ = make_env(tmp_path)
        app.close()
        run_dir = tmp_path / "run"
        env = {**os.environ, "AGENT_RUN_DIR": str(run_dir)}
        for key in ("AGENT_NO_WARM", "NO_COLOR"):
            env.pop(key, None)
        env["TERM"] = "xterm"
        master, slave = pty.openpty()
        server = _start_server(str(tmp_path / "agent.yaml"), env, run_dir, slave)
        try:
            out = tmp_path / "status.txt"
            with out.open("w") as fh:
                code = "import sys; from agent.cli import main; sys.argv[0] = 'agent'; sys.exit(main())"
                res = subprocess.run([sys.executable, "-c", code, "status", "-c", str(tmp_path / "agent.yaml")],
                                     env=env, stdout=fh, stderr=subprocess.PIPE, text=True, timeout=60,
                                     stdin=subprocess.DEVNULL, check=False)
            assert res.returncode == 0, res.stderr
            assert out.read_text() == "Nothing is contained.\n"
        finally:
            server.terminate()
            server.wait(timeout=10)
            os.close(master)
            os.close(slave)

    def test_client_terminal_gets_colour_although_the_server_has_no_colour(self, tmp_path: Path):
        """A client on a terminal gets colour warm as cold, though the server runs with NO_COLOR and no terminal."""
        import pty

        app, _ = make_env(tmp_path)
        app.close()
        run_dir = tmp_path / "run"
        env = {**os.environ, "AGENT_RUN_DIR": str(run_dir), "TERM": "xterm"}
        env.pop("AGENT_NO_WARM", None)
        env.pop("NO_COLOR", None)
        server = _start_server(str(tmp_path / "agent.yaml"), {**env, "NO_COLOR": "1"}, run_dir,
                               subprocess.DEVNULL)
        try:
            outputs = []
            for extra in ({}, {"AGENT_NO_WARM": "1"}):
                master, slave = pty.openpty()
                code = "import sys; from agent.cli import main; sys.argv[0] = 'agent'; sys.exit(main())"
                proc = subprocess.run([sys.executable, "-c", code, "status", "-c", str(tmp_path / "agent.yaml")],
                                      env={**env, **extra}, stdout=slave, stderr=subprocess.PIPE, timeout=60,
                                      stdin=subprocess.DEVNULL, check=False)
                os.close(slave)
                assert proc.returncode == 0
                outputs.append(os.read(master, 4096))
                os.close(master)
            warm_out, cold_out = outputs
            assert warm_out == cold_out and b"\x1b[32mNothing is contained." in warm_out
        finally:
            server.terminate()
            server.wait(timeout=10)


class TestWarmAuto:
    def test_auto_starts_a_server_that_leaves_when_idle(self, tmp_path: Path):
        """`warm: auto`: a cold command leaves a warm server behind, the next command is served by it with the
        same result, and the server exits by itself once unused for AGENT_WARM_IDLE_EXIT seconds."""
        app, _ = make_env(tmp_path)
        app.close()
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(cfg.read_text() + "warm: auto\n")
        run_dir = tmp_path / "run"
        env = {**os.environ, "AGENT_RUN_DIR": str(run_dir), "NO_COLOR": "1", "AGENT_WARM_IDLE_EXIT": "3"}
        env.pop("AGENT_NO_WARM", None)
        first = agent_cli(["status", "-c", str(cfg)], env)
        assert first.returncode == 0, first.stderr
        deadline = time.monotonic() + 20
        while not (run_dir.exists() and any(run_dir.glob("warm-*.sock"))):
            assert time.monotonic() < deadline, "warm: auto started no server"
            time.sleep(0.05)
        second = agent_cli(["status", "-c", str(cfg)], env)
        assert (second.returncode, second.stdout) == (first.returncode, first.stdout)
        deadline = time.monotonic() + 20
        while any(run_dir.glob("warm-*.sock")):
            assert time.monotonic() < deadline, "the auto-started server did not leave when idle"
            time.sleep(0.1)

    def test_off_by_default(self, tmp_path: Path):
        """Without `warm: auto` nothing is left running."""
        app, _ = make_env(tmp_path)
        app.close()
        run_dir = tmp_path / "run"
        env = {**os.environ, "AGENT_RUN_DIR": str(run_dir), "NO_COLOR": "1"}
        env.pop("AGENT_NO_WARM", None)
        assert agent_cli(["status", "-c", str(tmp_path / "agent.yaml")], env).returncode == 0
        time.sleep(1.0)
        assert not (run_dir.exists() and any(run_dir.glob("warm-*.sock")))

    def test_bad_value_names_the_field(self, tmp_path: Path):
        app, _ = make_env(tmp_path)
        app.close()
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(cfg.read_text() + "warm: sometimes\n")
        res = agent_cli(["status", "-c", str(cfg)], {**os.environ, "AGENT_NO_WARM": "1"})
        assert res.returncode == 2 and "warm: 'sometimes' is not one of off, auto" in res.stderr
