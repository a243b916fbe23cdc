"""A tiny TCP echo service for lab hosts: stands in for "a service on 8080" and answers liveness checks.

Why echo: probes only need a TCP accept, but ``LiveConnection.alive`` must prove that an *established* flow still
carries data, which an echo makes observable. Runs as a standalone script (``python -I -S echo.py ADDR PORT
PIDFILE``) using only the standard library, so it starts in milliseconds; it writes its own PID file once it
listens, which doubles as the readiness signal. One thread, non-blocking sockets: many connections are fine.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys

__all__ = ["serve"]


def _write_pid(path: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def _close(sel: selectors.BaseSelector, conn: socket.socket) -> None:
    sel.unregister(conn)
    conn.close()


def serve(address: str, port: int, pid_file: str) -> None:
    """Accept connections on ``address:port`` forever and echo back whatever each client sends."""
    server = socket.create_server((address, port), backlog=1024)
    server.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    _write_pid(pid_file)
    while True:
        for key, _ in sel.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is server:
                try:
                    conn, _peer = server.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                continue
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                _close(sel, sock)
                continue
            if not data:
                _close(sel, sock)
                continue
            try:
                sock.send(data)
            except (BlockingIOError, InterruptedError):
                pass  # a client that does not read loses echoes; liveness checks send one byte at a time
            except OSError:
                _close(sel, sock)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
