"""Unauthenticated floods become one audit record per source per minute, not one per request.

Found: 5,000 requests with a wrong signature wrote 4,992 audit records — an attacker without the secret could
grow the tamper-evident log (and the counsel report's appendix) at will, and bury what matters. Requests that
fail authentication or name an unknown source are counted here and written as one ``alert.rejected`` record per
(source, minute) with the count, the first and last time, the distinct clients (first 20) and the reasons.
The first failure of a window is written at once (someone is probing: say so now), the rest when the window
closes (a timer), or at shutdown. Malformed bodies from *authenticated* senders are still audited one by one:
they come from a configured sender and each is worth its own record. Metrics count every request.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AGGREGATED_CODES", "RejectionLog"]

AGGREGATED_CODES = frozenset({"unauthenticated", "unknown_source"})
_MAX_CLIENTS = 20


@dataclass
class _Window:
    start: float
    first_at: str
    count: int = 0
    clients: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)
    last_at: str = ""


class RejectionLog:
    def __init__(self, audit: Any, window: float = 60.0) -> None:
        self.audit, self.window = audit, window
        self._open: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._timers: list[threading.Timer] = []

    def reject(self, source: str, status: int, code: str, reason: str, client: str, size: int) -> None:
        if code not in AGGREGATED_CODES:
            self.audit.record("alert.rejected", source=source, status=status, code=code, reason=reason,
                              client=client, size=size)
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        with self._lock:
            win = self._open.get(source)
            if win is not None and now - win.start >= self.window:
                self._flush_locked(source)
                win = None
            first = win is None
            if win is None:
                win = self._open[source] = _Window(start=now, first_at=stamp)
                timer = threading.Timer(self.window, self._flush_due, args=(source, now))
                timer.daemon = True
                self._timers = [t for t in self._timers if t.is_alive()] + [timer]
                timer.start()
            win.count += 1
            win.last_at = stamp
            win.reasons[reason[:200]] += 1
            if client and client not in win.clients and len(win.clients) < _MAX_CLIENTS:
                win.clients.append(client)
        if first:  # the first failure of a window is written now; the rest are summed up when it closes
            self.audit.record("alert.rejected", source=source, status=status, code=code, reason=reason,
                              client=client, size=size, aggregated=True,
                              detail=f"further failures from this source in the next {int(self.window)} s are "
                                     "written as one alert.rejected_summary record")

    def _flush_due(self, source: str, started: float) -> None:
        with self._lock:
            win = self._open.get(source)
            if win is not None and win.start == started:
                self._flush_locked(source)

    def _flush_locked(self, source: str) -> None:
        win = self._open.pop(source)
        if win.count > 1:  # the first one is already written
            self.audit.record("alert.rejected_summary", source=source, count=win.count - 1,
                              first_at=win.first_at, last_at=win.last_at, clients=win.clients,
                              reasons=dict(win.reasons.most_common(10)), window_seconds=int(self.window))

    def close(self) -> None:
        """Write every open window (daemon shutdown) and stop the timers."""
        with self._lock:
            for source in list(self._open):
                self._flush_locked(source)
            for t in self._timers:
                t.cancel()
            self._timers = []
