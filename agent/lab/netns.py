"""Linux network-namespace primitives shared by the practice lab and the tests.

Why a thread-level ``enter``: the agent, paramiko, ldap3 and the HTTP doubles open sockets in the calling thread,
and a network namespace is a per-thread attribute on Linux. ``with enter("lab-mgmt"):`` moves only the current
thread (and threads it starts) into the namespace, so an in-process test can act "from the management host" and
come back. Sockets keep the namespace they were created in.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["NETNS_DIR", "SBIN_PATH", "add", "delete", "enter", "exists", "ip", "list_names", "run"]

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = SBIN_PATH + ":" + env.get("PATH", "")
    return env


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS`` in the root namespace."""
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, env=_env())


def exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def add(name: str) -> None:
    """Create namespace ``name`` with loopback up (idempotent)."""
    if not exists(name):
        ip("netns", "add", name)
    run(name, ["ip", "link", "set", "lo", "up"])


def delete(name: str) -> None:
    """Delete namespace ``name`` if present (idempotent)."""
    if exists(name):
        ip("netns", "delete", name, check=False)


def list_names(prefix: str = "") -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))


def run(name: str, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside namespace ``name`` (``ip netns exec``) and capture its output."""
    return subprocess.run(["ip", "netns", "exec", name, *argv], check=check, capture_output=True, text=True,
                          timeout=timeout, input=input, env=_env())


@contextlib.contextmanager
def enter(name: str) -> Iterator[None]:
    """Move the *current thread* into network namespace ``name`` for the duration of the block."""
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(NETNS_DIR / name, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
        try:
            yield
        finally:
            if _libc.setns(original, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns back to the original namespace: {os.strerror(err)}")
    finally:
        os.close(target)
        os.close(original)
