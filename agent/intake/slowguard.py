"""Header and body deadlines for the HTTP front: a slow client cannot hold a connection forever.

Found: a client that opens a connection and sends nothing, or trickles a byte of its headers now and then, or
announces a body and never finishes it, kept a connection (and for the body, a request in flight) for as long
as it liked. uvicorn's keep-alive timeout only covers idle time *between* requests, and any byte resets it.

:class:`GuardedHttpTools` is uvicorn's httptools protocol with two deadlines: the request line and headers must
arrive within ``header_timeout`` of the connection (or of the previous response), and the whole body within
``body_timeout`` of the headers. When one passes, the client gets ``408 Request Timeout`` (if no answer was
started) and the connection is closed; a body cut off that way is never stored (the front only hands complete
bodies to the core).

Why a sweep and not a timer per request: arming and cancelling two timers per request cost the storm path more
than the check itself. Each connection only notes when its current phase began (one attribute write per
phase); one sweep per second per event loop closes the connections whose phase is overdue, so a deadline is
enforced within a second of its value.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardedHttpTools", "guarded"]

_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_HEADERS, _BODY, _BUSY = 0, 1, 2  # waiting for headers | for the body | the application is answering


class _Sweeper:
    """One per event loop: every second, close guarded connections whose phase deadline has passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.live: weakref.WeakSet[GuardedHttpTools] = weakref.WeakSet()
        self._handle: asyncio.TimerHandle | None = None

    def add(self, proto: GuardedHttpTools) -> None:
        self.live.add(proto)
        if self._handle is None:
            self._handle = self.loop.call_later(1.0, self._sweep)

    def _sweep(self) -> None:
        self._handle = None
        now = self.loop.time()
        for proto in list(self.live):
            proto.check(now)
        if self.live:
            self._handle = self.loop.call_later(1.0, self._sweep)


_SWEEPERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sweeper] = weakref.WeakKeyDictionary()


class GuardedHttpTools(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    _phase: int = _HEADERS
    _since: float = 0.0

    def check(self, now: float) -> None:
        if self.transport.is_closing() or self._phase == _BUSY:
            return
        limit = self.header_timeout if self._phase == _HEADERS else self.body_timeout
        if now - self._since >= limit:
            self._too_slow()

    def _too_slow(self) -> None:
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_408)
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._phase, self._since = _HEADERS, self.loop.time()  # the first request's headers
        sweeper = _SWEEPERS.get(self.loop)
        if sweeper is None:
            sweeper = _SWEEPERS[self.loop] = _Sweeper(self.loop)
        sweeper.add(self)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._phase, self._since = _BODY, self.loop.time()

    def on_message_complete(self) -> None:
        self._phase = _BUSY
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._phase, self._since = _HEADERS, self.loop.time()  # the next request on this keep-alive connection


def guarded(header_timeout: float, body_timeout: float) -> Any:
    """A protocol class with these deadlines (uvicorn instantiates the class it is given)."""
    return type("GuardedHttpToolsConfigured", (GuardedHttpTools,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})
