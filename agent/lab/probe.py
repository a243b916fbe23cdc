"""Reachability probes and live connections between lab hosts.

Why: LAB.md makes the reachability matrix the proof that containment happened (and that release restored the
baseline), and an attacker's already-established connection must die when isolation is applied. Each check is a
TCP connect made from a thread that has entered the source host's network namespace (sockets keep the namespace
they were created in), so a whole matrix runs in parallel in about one timeout, with no subprocesses.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Self

from agent.lab import netns

__all__ = ["DEFAULT_MATRIX", "Check", "LiveConnection", "ProbeResult", "answers", "connect_from", "run_probe"]

DEFAULT_MATRIX: tuple[tuple[str, str, int], ...] = (
    ("mgmt", "victim", 22),
    ("mgmt", "victim", 8080),
    ("attacker", "victim", 8080),
    ("attacker", "victim", 22),
    ("peer", "victim", 8080),
    ("peer", "victim", 22),
    ("victim", "peer", 8080),
    ("victim", "attacker", 8080),
    ("mgmt", "legacy", 22),
    ("attacker", "legacy", 8080),
    ("peer", "legacy", 8080),
    ("legacy", "peer", 8080),
    ("mgmt", "peer", 8080),
    ("mgmt", "fw", 22),
)


@dataclass(frozen=True)
class Check:
    """One probe: ``src`` tried a TCP connect to ``dst:port``; ``state`` is "open" or "blocked"."""

    src: str
    dst: str
    port: int
    state: str
    detail: str

    @property
    def key(self) -> str:
        return f"{self.src}->{self.dst}:{self.port}"


@dataclass(frozen=True)
class ProbeResult:
    """A reachability matrix: the checks in request order and how long the whole probe took."""

    checks: tuple[Check, ...]
    elapsed: float

    def as_dict(self) -> dict[str, str]:
        """``{"src->dst:port": "open"|"blocked"}`` in request order (easy to assert on and to JSON-dump)."""
        return {c.key: c.state for c in self.checks}

    def records(self) -> list[dict[str, object]]:
        """One JSON-ready dict per check (src, dst, port, state, detail)."""
        return [{"src": c.src, "dst": c.dst, "port": c.port, "state": c.state, "detail": c.detail}
                for c in self.checks]

    def state(self, src: str, dst: str, port: int) -> str:
        """State of one check; KeyError if it was not probed."""
        return self.as_dict()[f"{src}->{dst}:{port}"]

    def all_open(self) -> bool:
        return all(c.state == "open" for c in self.checks)

    def open_keys(self) -> list[str]:
        return [c.key for c in self.checks if c.state == "open"]

    def diff(self, other: ProbeResult) -> dict[str, tuple[str | None, str | None]]:
        """Checks whose state differs: ``{key: (state here, state in other)}``; None where one side lacks it."""
        mine, theirs = self.as_dict(), other.as_dict()
        keys = list(mine) + [k for k in theirs if k not in mine]
        return {k: (mine.get(k), theirs.get(k)) for k in keys if mine.get(k) != theirs.get(k)}

    def render(self) -> str:
        """A plain-text table (src dst port state) for people."""
        rows = [("SRC", "DST", "PORT", "STATE")] + [(c.src, c.dst, str(c.port), c.state) for c in self.checks]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
        lines.append(f"({len(self.checks)} checks in {self.elapsed:.2f} s)")
        return "\n".join(lines)


def connect_from(namespace: str, address: str, port: int, timeout: float) -> socket.socket:
    """A TCP socket connected to ``address:port`` from inside ``namespace`` (the calling thread returns)."""
    with netns.enter(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((address, port))
    except BaseException:
        sock.close()
        raise
    return sock


def answers(namespace: str, address: str, port: int, timeout: float) -> bool:
    """Wait up to ``timeout`` until ``address:port`` accepts a connection made from ``namespace``; on port 22 the
    daemon must also send its SSH banner (a listening socket alone is not an sshd ready to serve)."""
    def once() -> bool:
        try:
            with connect_from(namespace, address, port, 0.5) as sock:
                return port != 22 or sock.recv(8).startswith(b"SSH-")
        except OSError:
            return False
    return wait_until(once, timeout)


def _check(namespace: str, address: str, port: int, timeout: float) -> tuple[str, str]:
    try:
        sock = connect_from(namespace, address, port, timeout)
    except TimeoutError:
        return "blocked", "timeout"
    except ConnectionRefusedError:
        return "blocked", "refused"
    except OSError as exc:
        return "blocked", exc.strerror or type(exc).__name__
    sock.close()
    return "open", "connected"


def run_probe(matrix: Sequence[tuple[str, str, int]], namespaces: Mapping[str, str],
              addresses: Mapping[str, str], timeout: float = 1.0) -> ProbeResult:
    """Run every (src, dst, port) check of ``matrix`` in parallel; unknown host names raise KeyError."""
    jobs = [(src, dst, port, namespaces[src], addresses[dst]) for src, dst, port in matrix]
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, min(len(jobs), 64))) as pool:
        states = list(pool.map(lambda j: _check(j[3], j[4], j[2], timeout), jobs))
    checks = tuple(Check(src, dst, port, state, detail)
                   for (src, dst, port, _, _), (state, detail) in zip(jobs, states, strict=True))
    return ProbeResult(checks, time.monotonic() - start)


class LiveConnection:
    """A long-lived TCP connection between lab hosts, e.g. an attacker's session opened before isolation."""

    def __init__(self, src: str, dst: str, port: int, sock: socket.socket) -> None:
        self.src, self.dst, self.port = src, dst, port
        self._sock: socket.socket | None = sock
        self._counter = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def alive(self, timeout: float = 2.0) -> bool:
        """Send one byte and wait for its echo: True only if the established flow still carries data both ways."""
        sock = self._sock
        if sock is None:
            return False
        self._drain(sock)
        self._counter = (self._counter + 1) % 256
        token = bytes([self._counter])
        try:
            sock.settimeout(timeout)
            sock.sendall(token)
            deadline = time.monotonic() + timeout
            while True:
                data = sock.recv(4096)
                if not data:
                    return False
                if token in data:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                sock.settimeout(remaining)
        except OSError:
            return False

    @staticmethod
    def _drain(sock: socket.socket) -> None:
        """Discard late echoes of earlier checks so they are not mistaken for this one's."""
        sock.setblocking(False)
        try:
            while sock.recv(4096):
                pass
        except OSError:
            pass
        finally:
            sock.setblocking(True)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __repr__(self) -> str:
        return f"LiveConnection({self.src}->{self.dst}:{self.port}, {'open' if self._sock else 'closed'})"


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
