"""Warm start: a pre-imported server that forks one child per CLI command, so `agent contain` starts in ms.

Why: importing SQLAlchemy and paramiko costs ~0.7 s — three times the ``ssh host 'nft -f -'`` the
agent replaces (ARCHITECTURE.md start-up budget). ``agent warm`` (and ``agent daemon``, which starts one) imports
everything once and listens on a root-only Unix socket. The thin client in :func:`try_forward` (standard library
only) passes its stdin/stdout/stderr, its network namespace, cwd, environment and argv over the socket
(SCM_RIGHTS); the server forks, the child joins the client's namespace, runs the normal CLI in-process and
reports the exit code. Nothing is shared between commands but imported code: each child opens its own database,
audit log and connections, exactly like a cold start, so behaviour is identical; when no server runs the CLI
simply runs in-process. Set ``AGENT_NO_WARM=1`` to force the cold path.
"""

from __future__ import annotations

import ast
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from agent.warm_client import FORWARDED_COMMANDS, config_arg, socket_path, try_forward

__all__ = ["FORWARDED_COMMANDS", "serve", "socket_path", "try_forward"]


def _preload(build_parser: Callable[[], object]) -> None:
    """Import what commands need, so children start warm."""
    import agent.audit
    import agent.commands.act
    import agent.commands.query
    import agent.engine
    import agent.plan
    import agent.lifecycle
    import agent.reconcile
    import agent.runctx
    import agent.store  # noqa: F401
    from agent.registry import Registry
    reg = Registry()
    for name in reg.names():
        try:
            reg.get(name)
        except Exception:  # noqa: BLE001, S110 - a broken plugin is reported when used, not here
            pass
    for lib in ("paramiko", "sqlalchemy.dialects.sqlite", "ctypes", "agent.audit.writer", "zoneinfo",
                "pwd", "encodings.idna", "agent.audit.keys", "agent.identify", "agent.progress",
                "agent.report.scope", "agent.targets", "agent.batching", "agent.items", "agent.containments",
                "agent.proof", "agent.journal_reads"):
        try:
            __import__(lib)
        except ImportError:
            pass
    build_parser()
    try:
        _exercise_store()
    except Exception as exc:  # noqa: BLE001 - an optimisation: a failure here must not stop the server
        sys.stderr.write(f"agent warm: warm-up skipped ({type(exc).__name__}: {exc})\n")


class _NoAudit:
    def record(self, event: str, **fields: object) -> dict[str, object]:
        return {}


def _exercise_store() -> None:
    """Walk one action through the journal on a throwaway in-memory database.

    Why: SQLAlchemy configures its mappers and builds its statement caches on first use (≈ 60 ms); done here,
    before forking, every child starts with them ready. Nothing touches the real database or audit log.
    """
    from sqlalchemy import orm, select

    from agent.journal import Journal
    from agent.store import Action, Store

    orm.configure_mappers()
    store = Store("sqlite://")
    try:
        journal = Journal(store, _NoAudit())
        journal.open_incident("INC-WARM", title="warm-up", reason="", requested_by="", trigger="cli")
        row = journal.create(Action(incident_id="INC-WARM", runbook="warm", step="warm", target="warm",
                                    connector="warm", action="warm", args={}, state="intent", kind="apply"))
        for state in ("snapshotted", "applying", "verifying", "done"):
            journal.transition(row, state, "warm-up", snapshot={}, result={}, verification={}, changed=1)
        journal.mark_undone(row.id, row.id)
        with store.session() as s:
            list(s.scalars(select(Action).where(Action.state.in_(("intent", "applying"))).order_by(Action.seq)))
            list(s.scalars(select(Action).where(Action.kind == "apply", Action.undone_at.is_(None))))
    finally:
        store.close()


def _read_config(config: str | None) -> None:
    """Read the served configuration once (fills per-process caches such as the time zone data).

    Children read it again themselves — an edited file takes effect with the next command, no restart needed.
    """
    try:
        from pathlib import Path

        from agent.app import App

        app = App(config_path=Path(config) if config else None)
        app.inventory  # noqa: B018 - the property loads it
    except Exception:  # noqa: BLE001, S110 - a broken config is reported by the command that uses it, not here
        pass


def _settle() -> None:
    """Move everything imported so far out of the garbage collector's reach before forking.

    Why: a child's first full collection would walk (and, through reference counts, copy) the whole imported
    heap — ≈ 40 ms per command; frozen objects are skipped.
    """
    import gc

    gc.collect()
    gc.freeze()


def serve(config: str | None, run: Callable[[list[str]], int], build_parser: Callable[[], object]) -> int:
    """Run the warm server in the foreground until SIGTERM/SIGINT. ``run`` is the CLI's ``main`` (each child runs
    it with the client's argv) and ``build_parser`` builds its parser once here; both are passed in by
    :mod:`agent.cli` so this module never imports the CLI back (no cycle)."""
    config = config or os.environ.get("AGENT_CONFIG")  # the same lookup order as the client's
    _preload(build_parser)
    _read_config(config)
    _settle()
    import signal
    from pathlib import Path

    path = Path(socket_path(config))
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        path.unlink()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    server.bind(str(path))
    os.umask(old)
    server.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"agent warm: serving {path}\n")
    follow = os.environ.get("AGENT_WARM_FOLLOW_PARENT", "")
    parent = int(follow) if follow.isdigit() else None  # the daemon's PID, fixed before we even started
    idle = os.environ.get("AGENT_WARM_IDLE_EXIT", "")  # seconds; set when started by `warm: auto`
    idle_limit = float(idle) if idle.replace(".", "", 1).isdigit() else None
    last = time.monotonic()
    server.settimeout(1.0 if idle_limit is None else min(1.0, idle_limit / 2))
    try:
        while True:
            try:
                conn, _ = server.accept()
                last = time.monotonic()
            except TimeoutError:
                if parent is not None and os.getppid() != parent:
                    return 0  # started by a daemon that is gone (even SIGKILLed): do not linger
                if idle_limit is not None and time.monotonic() - last > idle_limit:
                    return 0  # started on demand: leave when nobody has used it for a while
                continue
            conn.settimeout(None)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            peer, uid, _gid = struct.unpack("3i", creds)
            if uid != os.getuid():
                conn.close()
                continue
            if os.fork() == 0:
                server.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os._exit(_child(conn, peer, run))
            conn.close()
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        server.close()
        if path.exists():
            path.unlink()


def autostart(config: str | None) -> None:
    """``warm: auto``: after a cold command, start a warm server in the background for the next commands.

    Detached (own session, no terminal, output to /dev/null) and leaving by itself after an hour unused, so a
    responder who never asked for a daemon is not left with one forever. Does nothing if one already listens.
    """
    from agent.config import already_loaded, load_settings

    settings = already_loaded(config)  # the command just read agent.yaml: not parsed and validated twice
    if settings is None:  # the command stopped before reading it (a usage error)
        try:
            settings = load_settings(config)
        except Exception:  # noqa: BLE001 (the command already reported configuration problems; never fail twice)
            return
    if settings.warm != "auto" or os.path.exists(socket_path(config or os.environ.get("AGENT_CONFIG"))):
        return
    import subprocess

    env = {**os.environ, "AGENT_WARM_IDLE_EXIT": os.environ.get("AGENT_WARM_IDLE_EXIT", "3600")}
    argv = [sys.executable, "-m", "agent.cli", "warm"] + (["--config", config] if config else [])
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, env=env, close_fds=True)


def _request(body: bytes) -> dict[str, Any]:
    """The client's request (a Python literal, see :mod:`agent.warm_client`), checked for shape."""
    request = ast.literal_eval(body.decode())
    if not (isinstance(request, dict) and isinstance(request.get("argv"), list)
            and all(isinstance(a, str) for a in request["argv"]) and isinstance(request.get("cwd"), str)
            and isinstance(request.get("env"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in request["env"].items())):
        raise ValueError("malformed warm request")
    return request


def _adopt(request: dict[str, Any], client: int) -> None:
    """Make this child *the client's run*: its owner identity, its environment switches, its locale and streams.

    The environment is replaced key by key for everything the client may forward (:data:`ENV_KEEP`): a variable
    the client does not have is removed, so the server's own ``AGENT_FAILPOINTS`` or ``NO_COLOR`` never leaks
    into a command.
    """
    from agent import runctx
    from agent.warm_client import ENV_KEEP

    runctx.adopt_client(client)
    env = request["env"]
    for key in ENV_KEEP:
        if key in env:
            os.environ[key] = env[key]
        else:
            os.environ.pop(key, None)
    encoding = request.get("encoding") if isinstance(request.get("encoding"), str) else None
    if encoding is not None:
        import codecs
        try:
            codecs.lookup(encoding)
        except LookupError:
            encoding = None
    sys.stdin = open(0, encoding=encoding, closefd=False)  # noqa: SIM115 - rebinding the standard streams
    sys.stdout = open(1, "w", encoding=encoding, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding=encoding, errors="backslashreplace", closefd=False)  # noqa: SIM115


def _die_with_client(conn: socket.socket) -> None:
    """SIGKILL this child as soon as the client's end of the socket closes (the client was killed).

    Why: a cold run killed mid-action stops there; a warm child must not go on changing targets for a client
    that is gone (and whose pid now owns the journal rows, so the next start reconciles them).
    """
    import signal
    import threading

    def watch() -> None:
        try:
            while conn.recv(64):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="warm-client-watch", daemon=True).start()


def _child(conn: socket.socket, client: int, run: Callable[[list[str]], int]) -> int:
    code = 1
    try:
        head, fds, _flags, _addr = socket.recv_fds(conn, 4 + 65536, 4)
        size = struct.unpack("!I", head[:4])[0]
        body = head[4:]
        while len(body) < size:
            body += conn.recv(size - len(body))
        request = _request(body)
        stdin, stdout, stderr, netns = fds
        import ctypes  # here, not at the top: the thin client must not pay for it

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(netns, 0x40000000) != 0:
            return 1
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.close(netns)
        _adopt(request, client)
        os.chdir(request["cwd"])
        conn.sendall(struct.pack("!i", os.getpid()))
        _die_with_client(conn)
        try:
            code = run(request["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except KeyboardInterrupt:
            code = 130
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        try:
            conn.sendall(struct.pack("!i", code))
        except OSError:
            pass
    return code


if __name__ == "__main__":  # `python -m agent.warm` (agent daemon starts it): the entry point picks the CLI
    from agent.cli import main, parser

    sys.exit(serve(config_arg(sys.argv[1:]) or os.environ.get("AGENT_CONFIG"), main, parser))


