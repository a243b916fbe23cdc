"""Warm start: a pre-imported server that forks one child per CLI command, so `agent contain` starts in ms.

Why: importing SQLAlchemy, paramiko and structlog costs ~0.8 s — three times the ``ssh host 'nft -f -'`` the
agent replaces (ARCHITECTURE.md start-up budget). ``agent warm`` (and ``agent daemon``, which starts one) imports
everything once and listens on a root-only Unix socket. The thin client in :func:`try_forward` (standard library
only) passes its stdin/stdout/stderr, its network namespace, cwd, environment and argv over the socket
(SCM_RIGHTS); the server forks, the child joins the client's namespace, runs the normal CLI in-process and
reports the exit code. Nothing is shared between commands but imported code: each child opens its own database,
audit log and connections, exactly like a cold start, so behaviour is identical; when no server runs the CLI
simply runs in-process. Set ``AGENT_NO_WARM=1`` to force the cold path.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

__all__ = ["FORWARDED_COMMANDS", "serve", "socket_path", "try_forward"]

FORWARDED_COMMANDS = frozenset({"contain", "release", "run", "plan", "block-ip", "unblock-ip", "disable-account",
                                "enable-account", "status", "sweep", "incidents", "report"})
RUN_DIR = Path(os.environ.get("AGENT_RUN_DIR", "/run/containment-agent"))
_ENV_KEEP = ("AGENT_CONFIG", "NO_COLOR", "TERM", "SUDO_USER", "USER", "LOGNAME", "HOME", "PATH", "TZ",
             "AGENT_FAILPOINTS", "COLUMNS")


def _config_arg(argv: list[str]) -> str | None:
    for i, word in enumerate(argv):
        if word in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    return None


def socket_path(config: str | None) -> Path:
    """One socket per configuration file (MSSPs run one agent per client configuration)."""
    if config:
        path = Path(config)
    elif Path("config/agent.yaml").exists():  # same order as agent.config.default_config_path, without yaml
        path = Path("config/agent.yaml")
    else:
        path = Path("/etc/containment-agent/agent.yaml")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    return RUN_DIR / f"warm-{digest}.sock"


def try_forward(argv: list[str]) -> int | None:
    """Hand the command to a warm server if one is listening; None means "run it here"."""
    if os.environ.get("AGENT_NO_WARM") or not argv or argv[0] not in FORWARDED_COMMANDS:
        return None
    path = socket_path(_config_arg(argv) or os.environ.get("AGENT_CONFIG"))
    if not path.exists():
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        return None
    with sock:
        request = json.dumps({"argv": argv, "cwd": os.getcwd(),
                              "env": {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}}).encode()
        netns = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2, netns])
        finally:
            os.close(netns)
        sys.stdout.flush()
        child = _read_int(sock)
        if child is None:
            return None
        try:
            code = _read_int(sock)
        except KeyboardInterrupt:
            os.kill(child, signal.SIGINT)
            code = _read_int(sock)
        return 130 if code is None else code


def _read_int(sock: socket.socket) -> int | None:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        if not chunk:
            return None
        data += chunk
    return int(struct.unpack("!i", data)[0])


def _preload() -> None:
    """Import what commands need, so children start warm."""
    import agent.audit
    import agent.commands.act
    import agent.commands.query
    import agent.engine
    import agent.plan
    import agent.reconcile
    import agent.store  # noqa: F401
    from agent.registry import Registry
    reg = Registry()
    for name in reg.names():
        try:
            reg.get(name)
        except Exception:  # noqa: BLE001 - a broken plugin is reported when used, not here
            pass
    for lib in ("paramiko", "structlog", "sqlalchemy.dialects.sqlite"):
        try:
            __import__(lib)
        except ImportError:
            pass


def serve(config: str | None) -> int:
    """Run the warm server in the foreground until SIGTERM/SIGINT."""
    config = config or os.environ.get("AGENT_CONFIG")  # the same lookup order as the client's
    _preload()
    path = socket_path(config)
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
    server.settimeout(1.0)
    try:
        while True:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                if parent is not None and os.getppid() != parent:
                    return 0  # started by a daemon that is gone (even SIGKILLed): do not linger
                continue
            conn.settimeout(None)
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            _pid, uid, _gid = struct.unpack("3i", creds)
            if uid != os.getuid():
                conn.close()
                continue
            if os.fork() == 0:
                server.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os._exit(_child(conn))
            conn.close()
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        server.close()
        if path.exists():
            path.unlink()


def _child(conn: socket.socket) -> int:
    code = 1
    try:
        head, fds, _flags, _addr = socket.recv_fds(conn, 4 + 65536, 4)
        size = struct.unpack("!I", head[:4])[0]
        body = head[4:]
        while len(body) < size:
            body += conn.recv(size - len(body))
        request = json.loads(body)
        stdin, stdout, stderr, netns = fds
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(netns, 0x40000000) != 0:
            return 1
        for fd, target in ((stdin, 0), (stdout, 1), (stderr, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.close(netns)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - rebinding the standard streams
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.update(request["env"])
        conn.sendall(struct.pack("!i", os.getpid()))
        from agent.cli import main
        try:
            code = main(request["argv"])
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


if __name__ == "__main__":
    sys.exit(serve(_config_arg(sys.argv[1:]) or os.environ.get("AGENT_CONFIG")))


