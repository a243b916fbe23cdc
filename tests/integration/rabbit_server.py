"""A private RabbitMQ broker for tests (the per-site work queues), started from Debian's rabbitmq-server.

Everything is private: its own Mnesia and log dirs in a temp dir, its own node name, its AMQP port (on 127.0.0.1,
or on a lab address inside the lab's namespace) and Erlang distribution port on 127.0.0.1, no plugins, and its
own ``epmd`` (Erlang's port mapper) started by us on a free port bound to 127.0.0.1 (``ERL_EPMD_ADDRESS`` /
``ERL_EPMD_PORT``, erl(1) and epmd(1): otherwise the node starts a shared epmd on 0.0.0.0:4369 that outlives
it). Both are stopped by their PIDs at the end. With ``netns``, both run inside that network namespace.

:meth:`Broker.restart` stops the node and starts it again on the same Mnesia dir (durable queues and persistent
messages survive, as RabbitMQ documents: https://www.rabbitmq.com/docs/queues#durability).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
EPMD = shutil.which("epmd") or "/usr/bin/epmd"

__all__ = ["Broker", "private_rabbitmq"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One private RabbitMQ node (and its epmd); ``url`` is the AMQP URL clients use."""

    def __init__(self, base: Path, netns: str | None, host: str = "127.0.0.1") -> None:
        self.base, self.netns, self.host = base, netns, host
        self.port, self.dist_port, self.epmd_port = _free_port(), _free_port(), _free_port()
        self.node = f"agent{uuid.uuid4().hex[:8]}@localhost"
        self.url = f"amqp://guest:guest@{host}:{self.port}//"
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        (base / "plugins").write_text("[].\n")  # no plugins (no management UI port)
        (base / "home").mkdir()
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = {host}:{self.port}\n"
            "loopback_users = none\n"  # guest from the lab's workers too: the node listens on nothing else
            "log.console = false\n")

    def _argv(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    def env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.base / "home"),  # the Erlang cookie goes here
            "LANG": "C.UTF-8",
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": self.host,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_PID_FILE": str(self.base / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "RABBITMQ_SERVER_ERL_ARGS": "+P 65536",
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def start(self, timeout: float = 90) -> None:
        env = self.env()
        if self.epmd is None:
            self.epmd = subprocess.Popen(self._argv(EPMD, "-address", "127.0.0.1", "-port", str(self.epmd_port)),
                                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        log = open(self.base / "server.out", "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self._argv(str(SERVER)), env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited {self.proc.returncode}: {self.tail()}")
            if self._amqp_ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"rabbitmq-server did not accept AMQP within {timeout}s: {self.tail()}")

    def _amqp_ready(self) -> bool:
        from kombu import Connection
        try:
            if self.netns:
                from agent.lab import netns
                with netns.enter(self.netns), Connection(self.url, connect_timeout=1) as conn:
                    conn.connect()
            else:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.connect()
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def tail(self) -> str:
        try:
            return (self.base / "server.out").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the node by its PID (SIGTERM: a clean shutdown, queues flushed), SIGKILL after 30 s."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        beam = self._beam_pid()
        for pid in filter(None, (beam, proc.pid)):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if beam:
            _wait_gone(beam, 20)

    def _beam_pid(self) -> int | None:
        try:
            return int((self.base / "rabbit.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        epmd, self.epmd = self.epmd, None
        if epmd is not None:
            epmd.terminate()
            try:
                epmd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                epmd.kill()
                epmd.wait(timeout=10)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@contextmanager
def private_rabbitmq(netns: str | None = None, prefix: str = "agent-rmq-", host: str = "127.0.0.1"
                     ) -> Iterator[Broker]:
    """Start a private broker (skips the test when rabbitmq-server is not installed); stop it at the end.
    ``host``: the AMQP listener's address (loopback, or the lab management host's address inside ``netns``)."""
    if not SERVER.exists():
        pytest.skip("RabbitMQ is not installed: scripts/install-system.sh")
    try:
        import kombu  # noqa: F401
    except ImportError:
        pytest.skip("celery/kombu are not installed: pip install -e '.[workers]'")
    base = Path(tempfile.mkdtemp(prefix=prefix))
    broker = Broker(base, netns, host)
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
        shutil.rmtree(base, ignore_errors=True)
