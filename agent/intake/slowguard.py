"""Header and body deadlines for the HTTP front: a slow client cannot hold a connection forever.

Found: a client that opens a connection and sends nothing, or trickles a byte of its headers now and then, or
announces a body and never finishes it, kept a connection (and for the body, a request in flight) for as long
as it liked. uvicorn's keep-alive timeout only covers idle time *between* requests, and any byte resets it.

:class:`GuardedHttpTools` is uvicorn's httptools protocol with two deadlines: the request line and headers must
arrive within ``header_timeout`` of the connection (or of the previous response), and the whole body within
``body_timeout`` of the headers. When one passes, the client gets ``408 Request Timeout`` (if no answer was
started) and the connection is closed; a body cut off that way is never stored (the front only hands complete
bodies to the core).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardedHttpTools", "guarded"]

_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class GuardedHttpTools(HttpToolsProtocol):
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    _deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.response_started:
            self.transport.write(_408)
        if cycle is not None:
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout)  # the first request's headers

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.header_timeout)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.body_timeout)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.header_timeout)  # the next request on this keep-alive connection


def guarded(header_timeout: float, body_timeout: float) -> Any:
    """A protocol class with these deadlines (uvicorn instantiates the class it is given)."""
    return type("GuardedHttpToolsConfigured", (GuardedHttpTools,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})
