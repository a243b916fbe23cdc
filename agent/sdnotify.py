"""systemd's notify protocol (``sd_notify``) without libsystemd: READY, WATCHDOG and STOPPING datagrams.

Why: ``Type=notify`` lets systemd know when the daemon really serves (not merely started), and ``WatchdogSec=``
restarts a daemon that hangs while its process still lives. The watchdog is only fed after ``GET /healthz``
answered through the front process and the core, so a wedged core stops the pings and systemd restarts it.
Outside systemd (no ``$NOTIFY_SOCKET``) everything here does nothing. Protocol: sd_notify(3).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

__all__ = ["Watchdog", "notify", "watchdog_interval"]


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to ``$NOTIFY_SOCKET``; False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace (sd_notify(3))
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds (systemd's advice), or None when no watchdog is asked for us."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


class Watchdog(threading.Thread):
    """Sends READY=1 once ``healthy()`` first answers True, then WATCHDOG=1 each interval it still does."""

    def __init__(self, healthy: Callable[[], bool], interval: float | None) -> None:
        super().__init__(name="sd-watchdog", daemon=True)
        self.healthy, self.interval = healthy, interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if self.healthy():
                notify("READY=1\nSTATUS=serving")
                break
            self._stop_event.wait(0.2)
        while self.interval is not None and not self._stop_event.wait(self.interval):
            if self.healthy():
                notify("WATCHDOG=1")

    def stop(self) -> None:
        self._stop_event.set()
        notify("STOPPING=1")
