"""The core's end of the link to the HTTP front process: checked alerts in, answers out after the commit.

For each ``ALERT`` message: decide every alert (rule, target, dedupe claim) in the event loop, hand the request
to the group-committing writer, and answer ``202`` only from the writer's completion, i.e. after the alert is
committed (or ``503`` when the commit failed: the dedupe claims are given back, nothing was stored). ``REJECT``
messages are audited and counted, then answered with the front's 4xx. ``HTTP`` messages run the FastAPI
application (incidents, approvals, metrics, OpenAPI) as if it had been called directly.

Why answers are batched: the writer completes a whole group commit at once; its callbacks only queue the answers
and wake the event loop once per commit, which encodes them and writes them to the link in one call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from typing import Any

from agent.intake.request import IntakeRejected
from agent.intake.service import IntakeService
from agent.intake.wire import (
    AlertRequest,
    Answer,
    HttpAnswer,
    HttpRequest,
    LinkError,
    RejectRequest,
    core_reader,
    encode,
)
from agent.intake.writer import Decision, acknowledgement

__all__ = ["Relay"]


class Relay(asyncio.Protocol):
    def __init__(self, svc: IntakeService, api: Any, *, server: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.svc, self.api, self.server = svc, api, server
        self._reader = core_reader(self._bad_frame)  # typed, checked messages: the front is not trusted
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: list[tuple[int, list[Decision], BaseException | None]] = []
        self._done_lock = threading.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self.lost: asyncio.Future[None] | None = None

    # -- asyncio protocol -----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
        self.lost = self._loop.create_future()

    def data_received(self, data: bytes) -> None:
        for message in self._reader.feed(data):
            if isinstance(message, AlertRequest):
                self._alert(message)
            elif isinstance(message, RejectRequest):
                self._reject(message)
            elif isinstance(message, HttpRequest):
                task = asyncio.ensure_future(self._http(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            # Ready: a late duplicate of the start-up handshake, nothing to do

    def _bad_frame(self, error: LinkError, rid: int | None) -> None:
        """A frame that is not a message of the link's schema: audited, answered 500 when it names its request,
        and skipped; the link and every other request go on."""
        self.svc.audit.record("link.refused", error=str(error)[:500], rid=rid)
        if rid is not None:
            self._write(encode(Answer(rid, 500, {"detail": "internal error: the core refused the front's message"})))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    # -- alerts ---------------------------------------------------------------------------------------------
    def _alert(self, msg: AlertRequest) -> None:
        svc, rid = self.svc, msg.rid
        try:
            decisions = svc.decide_all(msg.parsed, msg.started, msg.routes)
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request, not the link
            svc.audit.record("alert.error", source=msg.source, error=f"{type(exc).__name__}: {exc}"[:500])
            self._write(encode(Answer(rid, 500, {"detail": "internal error; nothing was stored"})))
            return
        svc.writer.submit(decisions).add_done_callback(lambda fut: self._stored(rid, decisions, fut))

    def _stored(self, rid: int, decisions: list[Decision], fut: Future[None]) -> None:
        """Writer thread: queue the answer; the first one of a commit wakes the event loop."""
        with self._done_lock:
            self._done.append((rid, decisions, fut.exception()))
            wake = len(self._done) == 1
        if wake and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed (shutdown): nobody is left to answer
                self._loop.call_soon_threadsafe(self._answer_stored)

    def _answer_stored(self) -> None:
        with self._done_lock:
            done, self._done = self._done, []
        svc, out, stored = self.svc, [], []
        for rid, decisions, exc in done:
            if exc is not None:
                svc.unclaim(decisions)
                source = decisions[0].alert.source if decisions else ""
                svc.audit.record("alert.store_failed", source=source, error=f"{type(exc).__name__}: {exc}")
                out.append(encode(Answer(rid, 503, {"detail": "the alert could not be stored; retry"})))
                continue
            stored.append(decisions)
            out.append(encode(Answer(rid, 202, acknowledgement(decisions))))
        self._write(b"".join(out))
        svc.count(stored)

    # -- rejections and everything else ---------------------------------------------------------------------
    def _reject(self, msg: RejectRequest) -> None:
        self.svc.reject(msg.source, IntakeRejected(msg.status, msg.reason, msg.code), msg.client, msg.size)
        self._write(encode(Answer(msg.rid, msg.status, {"detail": msg.reason})))

    async def _http(self, msg: HttpRequest) -> None:
        """Run the FastAPI application on a relayed request (bodies are complete; responses are small)."""
        method, path, body = msg.method, msg.path, msg.body
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode("latin-1"),
                 "query_string": msg.query, "root_path": "", "headers": msg.headers, "client": msg.client,
                 "server": self.server}
        status, out_headers, chunks = 500, [], []
        complete = asyncio.Event()
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await complete.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status, out_headers = message["status"], [(bytes(k), bytes(v)) for k, v in message["headers"]]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    complete.set()
        try:
            await self.api(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - the front must get an answer; the error is audited
            self.svc.audit.record("api.error", path=path[:200], error=f"{type(exc).__name__}: {exc}"[:500])
            status, out_headers, chunks = 500, [(b"content-type", b"application/json")], [
                b'{"detail":"internal error"}']
        complete.set()
        self._write(encode(HttpAnswer(msg.rid, status, out_headers, b"".join(chunks))))

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
