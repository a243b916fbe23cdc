"""The daemon's HTTP front process: HTTP, signatures, JSON and normalisation on a core of their own.

Why a process: the daemon is Python, and one interpreter runs one thread at a time (the GIL). In a storm the
HTTP stack and the request checks (≈ half of the CPU an alert costs) competed with the writer and the dispatcher
for that one thread, while a second core stood idle. The front does the stateless half — HTTP (uvicorn with
httptools and uvloop), the source lookup, size limit, HMAC/bearer check, JSON parsing and normalisation
(:mod:`agent.intake.request`) — and hands each checked request to the core over a socketpair
(:mod:`agent.intake.wire`). The core (everything with state: dedupe, the group-committed store, dispatcher,
runner, scheduler, the API) answers once the alert is committed; only then does the front send the 202.
Rejections are audited by the core before the front answers the 4xx. Every other request (the API,
``/healthz`` — so liveness means the core answers —, ``/metrics``, OpenAPI) is relayed to the core's FastAPI
application as is.

Life: ``agent daemon`` starts ``python -m agent.intake.front --listen-fd N --link-fd M`` with the listening
socket and its end of the link inherited, sends the :class:`~agent.intake.wire.Config` over the link and
waits for :class:`~agent.intake.wire.Ready`.
SIGTERM (from the core at shutdown) stops accepting and finishes the requests in flight.
When the link closes (the core stopped or died) the front answers what is in flight with 503 and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from agent.intake.request import IntakeRejected, asgi_chunks, find_source, parse_alerts, read_body
from agent.intake.wire import (
    FROM_CORE,
    VERSION,
    AlertRequest,
    Answer,
    Config,
    FrontConfig,
    HttpRequest,
    LinkError,
    Ready,
    RejectRequest,
    encode,
    front_reader,
    recv_frame,
)

__all__ = ["CoreGone", "CoreLink", "FrontApp", "main"]

_JSON = [(b"content-type", b"application/json")]
_GONE = (503, {"detail": "the daemon is stopping or restarting; retry"})


class CoreGone(Exception):
    """The link to the core closed: nothing more can be stored or answered."""


class CoreLink(asyncio.Protocol):
    """The front's end of the link: numbered requests, answers matched by number; writes coalesced per loop turn."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        self._on_lost = on_lost
        self._reader = front_reader(self._bad_frame)
        self._pending: dict[int, asyncio.Future[tuple[int, Any]]] = {}
        self._out: list[bytes] = []
        self._next = 0
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        for msg in self._reader.feed(data):
            if isinstance(msg, Config):  # only ever the first message, read by serve()
                continue
            fut = self._pending.pop(msg.rid, None)
            if fut is not None and not fut.done():
                fut.set_result((msg.status, msg.body if isinstance(msg, Answer) else (msg.headers, msg.body)))

    def _bad_frame(self, error: LinkError, rid: int | None) -> None:
        fut = self._pending.pop(rid, None) if rid is not None else None
        if fut is not None and not fut.done():
            fut.set_result((500, {"detail": f"internal error: {error}"}))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(CoreGone())
        self._on_lost()

    async def call(self, make: Callable[[int], AlertRequest | RejectRequest | HttpRequest]) -> tuple[int, Any]:
        """Send one request (``make(rid)``) to the core and wait for its ``(status, answer)``; :class:`CoreGone`
        if it is gone."""
        if self.closed:
            raise CoreGone()
        self._next += 1
        rid = self._next
        fut: asyncio.Future[tuple[int, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        self.send(make(rid))
        return await fut

    def send(self, message: AlertRequest | RejectRequest | HttpRequest | Ready) -> None:
        self._out.append(encode(message))
        if len(self._out) == 1:  # one write per loop turn for every request that arrived in it
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        data, self._out = b"".join(self._out), []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)


class FrontApp:
    """The ASGI application of the front: alerts are checked here, everything else is relayed to the core."""

    def __init__(self, config: FrontConfig, link: CoreLink) -> None:
        self.config, self.link = config, link

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if method == "POST" and path.startswith("/alerts/"):
            status, answer = await self._alert(scope, receive)
        else:
            status, answer = await self._relay(scope, receive)
        if isinstance(answer, tuple):  # relayed: the core's application set every header
            headers, payload = answer
        else:
            payload = json.dumps(answer, separators=(",", ":")).encode()
            headers = [*_JSON, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _alert(self, scope: dict[str, Any], receive: Any) -> tuple[int, Any]:
        started = time.monotonic()
        name = scope["path"][len("/alerts/"):]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope["client"][0] if scope.get("client") else ""
        body = b""
        try:
            source = find_source(self.config.sources, name)
            body = await read_body(headers, asgi_chunks(receive), self.config.max_body_bytes)
            parsed = parse_alerts(source, headers, body, scope.get("query_string", b"").decode("latin-1"))
        except IntakeRejected as exc:  # the core audits it before we answer
            status, code, reason, size = exc.status, exc.code, exc.reason, len(body)
            return await self._call(lambda rid: RejectRequest(rid, name, status, code, reason, client, size))
        rules, hosts = self.config.rules, self.config.hosts
        routes = [(r[0].name, r[1]) if (r := rules.route(p.alert, hosts)) else None for p in parsed]
        return await self._call(lambda rid: AlertRequest(rid, name, client, started, parsed, routes))

    async def _relay(self, scope: dict[str, Any], receive: Any) -> tuple[int, Any]:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await read_body(headers, asgi_chunks(receive), self.config.max_body_bytes)
        except IntakeRejected as exc:
            return exc.status, {"detail": exc.reason}
        client = scope.get("client")
        return await self._call(lambda rid: HttpRequest(
            rid, scope["method"], scope["path"], bytes(scope.get("query_string", b"")),
            [(bytes(k), bytes(v)) for k, v in scope["headers"]], (client[0], client[1]) if client else None, body))

    async def _call(self, make: Callable[[int], AlertRequest | RejectRequest | HttpRequest]) -> tuple[int, Any]:
        try:
            return await self.link.call(make)
        except CoreGone:
            return _GONE


def _server_class() -> Any:
    import uvicorn

    class FrontServer(uvicorn.Server):
        """uvicorn, plus: connect the link before serving, say READY once listening, and exit 0 on SIGTERM."""

        def __init__(self, config: Any, link_sock: socket.socket, link: CoreLink) -> None:
            super().__init__(config)
            self.link_sock, self.link = link_sock, link

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            loop = asyncio.get_running_loop()
            await loop.create_unix_connection(lambda: self.link, sock=self.link_sock)
            await super().startup(sockets=sockets)
            if self.started:
                self.link.send(Ready(os.getpid(), VERSION))

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()  # the core asked us to stop: exit 0, do not die by the signal
    return FrontServer


def serve(listen_sock: socket.socket, link_sock: socket.socket) -> None:
    """Read the configuration from the link, then serve until SIGTERM/SIGINT or until the core is gone."""
    import uvicorn

    first = recv_frame(link_sock, FROM_CORE)
    if not isinstance(first, Config):
        raise LinkError(f"the core sent {type(first).__name__} instead of the configuration")
    config = FrontConfig.from_message(first)
    server: Any = None

    def core_gone() -> None:
        if server is not None:
            server.should_exit = True
    link = CoreLink(core_gone)
    from agent.intake.slowguard import guarded
    tls: dict[str, Any] = {}
    if config.tls:
        import ssl
        tls = {"ssl_certfile": config.tls["cert"], "ssl_keyfile": config.tls["key"]}
        if config.tls.get("client_ca"):  # mTLS: only clients with a certificate from this CA get a connection
            tls.update(ssl_ca_certs=config.tls["client_ca"], ssl_cert_reqs=ssl.CERT_REQUIRED)
    uv = uvicorn.Config(FrontApp(config, link), log_level="warning", access_log=False, lifespan="off",
                        http=guarded(config.header_timeout, config.body_timeout), loop="auto", backlog=2048,
                        timeout_graceful_shutdown=config.graceful_timeout, **tls)
    server = _server_class()(uv, link_sock, link)
    gc.collect()
    gc.freeze()  # the start-up heap (modules, configuration) is never scanned again: no long collection pauses
    server.run(sockets=[listen_sock])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.intake.front", description=__doc__.split("\n")[0])
    parser.add_argument("--listen-fd", type=int, required=True, help="inherited listening TCP socket")
    parser.add_argument("--link-fd", type=int, required=True, help="inherited end of the socketpair to the core")
    args = parser.parse_args(argv)
    listen_sock = socket.socket(fileno=args.listen_fd)
    link_sock = socket.socket(fileno=args.link_fd)
    serve(listen_sock, link_sock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
