"""``agent daemon``: alerts in, runbooks out — the webhook server, the dispatcher, the runner and the scheduler.

Start-up order (each step before the next, so nothing runs against a half-known journal):

1. load settings, inventory, rules and the ``daemon:`` section (any error stops the start with file:line);
2. **reconcile** actions a crashed process left mid-way (verify the target's real state; never apply twice);
3. rebuild the dedupe index and blast-radius counts from the database; start the alert writer and the
   dispatcher, and decide alerts that were stored but not yet decided when the last daemon stopped;
4. start the scheduler: persistent jobs missed while down run once now; the sweep re-creates missing TTL jobs;
5. serve HTTP (uvicorn, one process, one event loop) on ``daemon.listen``.

Shutdown on SIGTERM/SIGINT: uvicorn stops accepting and finishes the requests in progress (each is stored and
answered, or not answered at all); the writer and dispatcher stop (undecided alerts stay ``accepted`` in the
database and are decided after the next start); running plans get ``daemon.shutdown_grace`` to finish, then stop
before their next step — every transition is already journaled, and reconciliation at the next start finishes
the rest. Then the scheduler stops (its jobs stay in the database) and the audit log is flushed.

Network namespaces: every thread the daemon creates inherits the creating thread's network namespace, so a
daemon started inside ``with netns.enter("lab-mgmt")`` (tests) acts from the management host.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from agent.app import App
from agent.intake.config import DaemonConfig, load_daemon_config, parse_listen

__all__ = ["Daemon", "daemon_actor"]


def daemon_actor() -> str:
    return f"agent-daemon@{socket.gethostname()}"


class Daemon:
    def __init__(self, app: App, *, listen: str | None = None, config: DaemonConfig | None = None) -> None:
        self.app = app
        self.config = config or load_daemon_config(app.settings.daemon, app.settings.path)
        self.host, self.port = parse_listen(listen, where="--listen") if listen else (self.config.host,
                                                                                     self.config.port)
        self.service: Any = None
        self.scheduler: Any = None
        self.server: Any = None
        self.sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopped = False

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Everything except serving HTTP: reconcile, intake, scheduler; binds the listening socket."""
        import uvicorn

        from agent.intake.app import create_app
        from agent.intake.service import IntakeService
        from agent.reconcile import reconcile
        from agent.scheduler import DaemonScheduler
        app = self.app
        app.inventory  # noqa: B018 - load and validate before anything else
        engine = app.engine()
        app.audit.record("daemon.starting", listen=f"{self.host}:{self.port}", pid=_pid(),
                         sources=sorted(self.config.sources))
        outcomes = reconcile(engine)
        if outcomes:
            app.audit.record("daemon.reconciled", actions=[o.to_dict() for o in outcomes])
        self.service = IntakeService(app, self.config, engine=engine)
        self.scheduler = DaemonScheduler(self.service)
        self.service.scheduler = self.scheduler
        self.service.runner.scheduler = self.scheduler
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.host, self.port))
        self.port = self.sock.getsockname()[1]
        self.service.start()
        self.scheduler.start()
        config = uvicorn.Config(create_app(self.service), log_level="warning", access_log=False,
                                lifespan="off", http="auto", loop="auto", backlog=2048,
                                timeout_graceful_shutdown=10)
        self.server = _Server(config)
        app.audit.record("daemon.started", listen=f"{self.host}:{self.port}", rules=len(self.service.rules.rules))

    def serve(self) -> None:
        """Serve until SIGTERM/SIGINT (main thread) or :meth:`stop`."""
        assert self.server is not None and self.sock is not None
        self.server.run(sockets=[self.sock])

    def run(self) -> int:
        """The whole life of ``agent daemon`` in the foreground; returns the exit code."""
        self.start()
        warm = self._start_warm()
        try:
            self.serve()
        finally:
            if warm is not None:
                warm.terminate()
                warm.wait(10)
            self.shutdown()
        return 0

    def _start_warm(self) -> subprocess.Popen[bytes] | None:
        """A pre-imported fork server beside the daemon, so CLI commands on this host start in milliseconds
        (see agent.warm); forked before any of its own threads exist, hence a separate process."""
        if os.environ.get("AGENT_NO_WARM"):
            return None
        return subprocess.Popen([sys.executable, "-m", "agent.warm", "--config", str(self.app.settings.path)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "AGENT_WARM_FOLLOW_PARENT": str(os.getpid())})

    def start_in_thread(self, timeout: float = 15.0) -> Daemon:
        """Start and serve from a background thread (tests, embedding); returns once HTTP answers."""
        self.start()
        self._thread = threading.Thread(target=self.serve, name="daemon-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the daemon's HTTP server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving (like SIGTERM) and shut everything down."""
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(30)
        self.shutdown()

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.service is not None:
            self.service.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        if self.sock is not None:
            self.sock.close()
        self.app.audit.record("daemon.stopped", pid=_pid())
        self.app.audit.flush()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that a SIGTERM/SIGINT is not re-raised after serving stops: the daemon still
        has to stop its dispatcher, runner and scheduler, then exits 0 (uvicorn would die by the signal)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self.received_signal = sig
            self._captured_signals.clear()
    return Server


def _Server(config: Any) -> Any:
    return _server_class()(config)


def _pid() -> int:
    import os
    return os.getpid()
