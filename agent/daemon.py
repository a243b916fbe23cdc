"""``agent daemon``: alerts in, runbooks out — the webhook server, the dispatcher, the runner and the scheduler.

Two processes. This one, the *core*, holds everything with state: the store, the dedupe index, the group-
committing alert writer, the dispatcher, the runner, the scheduler and the API. It starts an HTTP *front*
(:mod:`agent.intake.front`) that does the stateless half of every request — HTTP, signature, JSON, normalisation,
rule matching — and relays each checked alert to the core (:mod:`agent.intake.relay`); the 202 is sent only
after the core committed the alert. Why: Python runs one thread at a time per process, and in an alert storm
the HTTP work and the writer and dispatcher took turns on one core while the other stood idle.

Start-up order (each step before the next, so nothing runs against a half-known journal):

1. load settings, inventory, rules and the ``daemon:`` section (any error stops the start with file:line);
2. **reconcile** actions a crashed process left mid-way (verify the target's real state; never apply twice);
3. rebuild the dedupe index and blast-radius counts from the database; load the rules' runbooks and the
   inventory's connectors; start the alert writer and the dispatcher, and decide alerts that were stored but
   not yet decided when the last daemon stopped;
4. start the scheduler: persistent jobs missed while down run once now; the sweep re-creates missing TTL jobs.
   Only the *leader* runs it (:mod:`agent.leader`): with two daemons on one PostgreSQL the other keeps its
   scheduler paused (its jobs still go to the shared job store) and takes over when the leader's lock session
   ends; on SQLite the daemon is always leader;
5. bind ``daemon.listen`` and start the front on that socket (it reports when it serves); freeze the start-up
   heap, so the garbage collector never pauses serving to walk it; answer the front.

Shutdown on SIGTERM/SIGINT: the front stops accepting and finishes the requests in progress (each is stored and
answered, or not answered at all — the core keeps answering until the front is gone); the writer and dispatcher
stop (undecided alerts stay ``accepted`` in the database and are decided after the next start); running plans
get ``daemon.shutdown_grace`` to finish, then stop before their next step — every transition is already
journaled, and reconciliation at the next start finishes the rest. Then the scheduler stops (its jobs stay in
the database) and the audit log is flushed.

A front that exits by itself (killed, crashed) is started again on the same socket, audited as
``daemon.front_exited``; more than five times a minute and the daemon stops with exit status 1. A core that dies
takes its front along: the front exits as soon as its link to the core closes.

Network namespaces: every thread and process the daemon creates inherits the creating thread's network
namespace, so a daemon started inside ``with netns.enter("lab-mgmt")`` (tests) acts from the management host.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
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
        self.leadership: Any = None  # agent.leader.Leadership: runs the scheduler only while leader
        self.front: Any = None  # agent.intake.supervise.FrontProcess
        self.notifier: Any = None  # agent.notify.worker.NotifyWorker
        self.api: Any = None
        self.sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._serving = threading.Event()
        self._restarts: list[float] = []  # monotonic times the front exited by itself
        self._stopping = False
        self._stopped = False
        self.exit_code = 0

    # -- life cycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Everything except serving: reconcile, intake, scheduler; binds the socket; starts the HTTP front."""
        from agent.intake.app import create_app
        from agent.intake.service import IntakeService
        from agent.intake.supervise import FrontProcess
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
        self.sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.bind((self.host, self.port))
        self.sock.listen(_BACKLOG)  # connections wait in the backlog until the front accepts them
        self.port = self.sock.getsockname()[1]
        self.service.start()
        from agent.notify.wiring import start_notifications
        self.notifier = start_notifications(app)  # e-mail/chat; None when agent.yaml configures no channel
        if app.drainer is not None:  # this daemon writes the deployment's audit chain: the site workers' records
            app.drainer.start()      # are appended as they commit (agent/audit/drain.py), notified from there
        self._start_scheduler_when_leader()
        self.api = create_app(self.service)
        self.front = FrontProcess(self.sock, self._front_config())
        self.front.start()
        _settle_heap()
        app.audit.record("daemon.started", listen=f"{self.host}:{self.port}", rules=len(self.service.rules.rules),
                         front_pid=self.front.proc.pid)

    def _start_scheduler_when_leader(self) -> None:
        """Start the scheduler paused, and let leadership resume/pause it (agent.leader). Alerts are accepted
        either way: only scheduled jobs (TTL releases, re-checks, re-verification, sweep) need one runner."""
        from agent.leader import Leadership
        audit = self.app.audit
        sched = self.scheduler

        def acquired() -> None:
            if shared:  # one machine (SQLite): always leader, nothing worth recording
                audit.record("daemon.leader_acquired", pid=_pid())
            sched.resume()

        def lost(why: str) -> None:
            sched.pause()
            audit.record("daemon.leader_lost", pid=_pid(), reason=why)

        self.leadership = Leadership(self.app.store.engine, on_acquired=acquired, on_lost=lost)
        shared = self.leadership.shared
        self.leadership.on_tick = sched.wakeup  # jobs another daemon added to the shared store
        sched.guard = self.leadership.confirm
        sched.start(paused=True)
        self.leadership.start()

    def _front_config(self) -> Any:
        from agent.intake.wire import FrontConfig
        svc = self.service
        cfg = self.config
        return FrontConfig(sources=dict(svc.sources), max_body_bytes=cfg.max_body_bytes, rules=svc.rules,
                           hosts=svc.host_tags, graceful_timeout=_GRACEFUL,
                           header_timeout=cfg.header_timeout.total_seconds(),
                           body_timeout=cfg.body_timeout.total_seconds(), tls=cfg.tls)

    def serve(self) -> None:
        """Answer the front until SIGTERM/SIGINT (main thread) or :meth:`stop`."""
        assert self.front is not None, "start() first"
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        from agent.intake.relay import Relay
        loop = self._loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._begin_stop)
        while True:
            _, relay = await loop.create_unix_connection(
                lambda: Relay(self.service, self.api, server=(self.host, self.port)), sock=self.front.link)
            self._serving.set()
            if self._stopping:  # stop() came while we were (re)starting the front
                self._begin_stop(force=True)
            assert relay.lost is not None
            await relay.lost  # the link closed: the front exited, asked to or not
            status = await loop.run_in_executor(None, self.front.wait, _GRACEFUL + 5)
            if self._stopping or not await self._restart_front(status):
                return

    async def _restart_front(self, status: int | None) -> bool:
        """The front exited by itself: start another on the same socket, unless it keeps dying (then stop)."""
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60] + [now]
        restarting = len(self._restarts) <= _MAX_RESTARTS
        self.app.audit.record("daemon.front_exited", pid=self.front.proc.pid, status=status, restarting=restarting)
        if restarting:
            try:
                await asyncio.get_running_loop().run_in_executor(None, self.front.start)
                return True
            except RuntimeError as exc:
                self.app.audit.record("daemon.front_failed", error=str(exc))
        self.exit_code = 1
        self._begin_stop()
        return False

    def _begin_stop(self, force: bool = False) -> None:
        """Stop accepting: the front finishes the requests in flight (the core still answers them), then exits."""
        if self._stopping and not force:
            return
        self._stopping = True
        if self.sock is not None:
            self.sock.close()  # the front holds its own copy; once it closes it, new connections are refused
        if self.front is not None:
            self.front.terminate()

    def run(self) -> int:
        """The whole life of ``agent daemon`` in the foreground; returns the exit code.

        The warm CLI server starts first: its one-time imports (≈ 2 s of CPU) then overlap the daemon's own
        start-up instead of its first seconds of serving.
        """
        from agent.sdnotify import Watchdog, watchdog_interval
        warm = self._start_warm()
        dog = Watchdog(self._healthy, watchdog_interval()) if os.environ.get("NOTIFY_SOCKET") else None
        try:
            self.start()
            if dog is not None:  # systemd (Type=notify): READY once /healthz answers, then the watchdog
                dog.start()
            self.serve()
        finally:
            if dog is not None:
                dog.stop()
            if warm is not None:
                warm.terminate()
                warm.wait(10)
            self.shutdown()
        return self.exit_code

    def _healthy(self) -> bool:
        """What the systemd watchdog is fed on: ``GET /healthz`` answered through the front by the core."""
        if not self._serving.is_set() or self._stopping:
            return False
        if self.config.tls is not None:  # no client certificate here: the front process being alive must do
            return self.front is not None and self.front.proc.poll() is None
        import urllib.request
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        url = f"http://[{host}]:{self.port}/healthz" if ":" in host else f"http://{host}:{self.port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:  # our own endpoint, http only
                return bool(answer.status == 200)
        except OSError:
            return False

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
        if not self._serving.wait(timeout):
            self.stop()  # the front process and the threads must not outlive the failed start
            raise RuntimeError("the daemon's HTTP server did not start")
        return self

    def stop(self) -> None:
        """Stop serving (like SIGTERM) and shut everything down."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: serving is over anyway
                loop.call_soon_threadsafe(self._begin_stop)
        else:
            self._stopping = True
        if self._thread is not None:
            self._thread.join(30)
        self.shutdown()

    def shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping = True
        if self.front is not None:
            self.front.stop()
        if self.service is not None:
            self.service.stop()
        if self.leadership is not None:  # before the scheduler: another daemon may lead at its next poll
            self.leadership.stop()
        if self.scheduler is not None:
            self.scheduler.shutdown()
        from agent.notify.wiring import stop_notifications
        stop_notifications(self.app, self.notifier)
        if self.sock is not None:
            self.sock.close()
        self.app.audit.record("daemon.stopped", pid=_pid())
        self.app.audit.flush()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.config.tls else 'http'}://{host}:{self.port}"


_BACKLOG = 2048
_GRACEFUL = 10  # seconds the front gives requests in flight at shutdown
_MAX_RESTARTS = 5  # front exits per minute the core recovers from; beyond, the daemon stops (and says so)


def _loop_factory() -> Any:
    """uvloop when installed (uvicorn[standard]): cheaper wake-ups from the writer thread."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _settle_heap() -> None:
    """Keep the garbage collector off everything start-up built (modules, settings, inventory, rules).

    Why: a full collection walks every tracked object; with that heap it took 50-100 ms — a pause every request
    in flight waited for. Frozen objects are never scanned again; objects made while serving are collected as
    usual.
    """
    gc.collect()
    gc.freeze()


def _pid() -> int:
    return os.getpid()
