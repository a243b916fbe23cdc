"""The thin client of the warm server: hand a command to a pre-imported ``agent warm`` and wait for its exit code.

Why a module of its own, importing only built-in C modules (``_socket``, ``_struct``, ``_sha256``): it runs at the
start of *every* ``agent`` command, before anything else. ``socket``, ``json``, ``pathlib``, ``typing`` and
``hashlib`` pull in ``enum``, ``re`` and OpenSSL — ≈ 30 ms, as much as the Python interpreter itself needs to start,
spent twice in each contain + release. The request travels as a Python literal (``repr``) that the server reads
with :func:`ast.literal_eval`; both ends run the same code, and the server accepts only same-uid peers.
See :mod:`agent.warm` for the server.
"""

from __future__ import annotations

import _socket
import os
import sys
from _struct import pack, unpack

__all__ = ["ENV_KEEP", "FORWARDED_COMMANDS", "config_arg", "run_dir", "socket_path", "try_forward"]

FORWARDED_COMMANDS = frozenset({"contain", "release", "run", "plan", "block-ip", "unblock-ip", "disable-account",
                                "enable-account", "status", "sweep", "incidents", "report"})
# Everything of the client's environment that changes what a command does or prints. The warm child replaces
# exactly these keys (missing ones are removed), so the server's environment never speaks for a client.
ENV_KEEP = ("AGENT_CONFIG", "NO_COLOR", "TERM", "SUDO_USER", "USER", "LOGNAME", "HOME", "PATH", "TZ",
            "AGENT_FAILPOINTS", "COLUMNS", "LINES", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES",
            "LC_TIME", "LC_NUMERIC")


def run_dir() -> str:
    return os.environ.get("AGENT_RUN_DIR", "/run/containment-agent")


def config_arg(argv: list[str]) -> str | None:
    """The ``-c/--config`` value on a command line, if any (without parsing the rest)."""
    for i, word in enumerate(argv):
        if word in ("-c", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if word.startswith("--config="):
            return word.split("=", 1)[1]
    return None


def socket_path(config: str | None) -> str:
    """One socket per configuration file (MSSPs run one agent per client configuration)."""
    if config:
        path = config
    else:
        from agent.paths import default_config_path  # standard library only, like this module

        path = str(default_config_path())
    from _sha256 import sha256  # the interpreter's own implementation: no OpenSSL load

    digest = sha256(os.path.realpath(path).encode()).hexdigest()[:16]
    return os.path.join(run_dir(), f"warm-{digest}.sock")


def try_forward(argv: list[str]) -> int | None:
    """Hand the command to a warm server if one is listening; None means "run it here"."""
    if os.environ.get("AGENT_NO_WARM") or not argv or argv[0] not in FORWARDED_COMMANDS:
        return None
    path = socket_path(config_arg(argv) or os.environ.get("AGENT_CONFIG"))
    if not os.path.exists(path):
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    try:
        request = repr({"argv": list(argv), "cwd": os.getcwd(),
                        "env": {k: os.environ[k] for k in ENV_KEEP if k in os.environ},
                        "encoding": getattr(sys.stdout, "encoding", None)}).encode()
        netns = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            sock.sendmsg([pack("!I", len(request)) + request],
                         [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, pack("4i", 0, 1, 2, netns))])
        finally:
            os.close(netns)
        sys.stdout.flush()
        child = _read_int(sock)
        if child is None:
            return None
        try:
            code = _read_int(sock)
        except KeyboardInterrupt:
            import signal

            os.kill(child, signal.SIGINT)
            code = _read_int(sock)
        return 130 if code is None else code
    finally:
        sock.close()


def _read_int(sock: _socket.socket) -> int | None:
    data = b""
    while len(data) < 4:
        chunk = sock.recv(4 - len(data))
        if not chunk:
            return None
        data += chunk
    return int(unpack("!i", data)[0])
