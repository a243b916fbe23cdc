"""The link between the daemon (the core) and its HTTP front process: typed messages and their framing.

Frames are a 4-byte big-endian length and one MessagePack-encoded message. Every message is a
:class:`msgspec.Struct` declared below, tagged with its kind and decoded against the union of the kinds the
receiver accepts, so each field is type-checked on receipt (msgspec validates while it decodes). Nothing on the
link can name code: a compromised front can send wrong data, never make the core call anything (a pickle, an
unknown kind, a missing or mistyped field is a :class:`LinkError` naming what was wrong; the core audits it,
answers that request 500 when it can read its number, and keeps serving).

Why msgspec/MessagePack and not pickle: pickle runs code named by the sender (pickle docs, "Restricting
Globals"); JSON would lose ``bytes`` (HTTP headers and bodies) and cost more; msgspec decodes and validates an
alert frame ~3x faster than the restricted unpickler it replaces.

:data:`VERSION` is the schema version: the core sends it in :class:`Config`, the front echoes it in
:class:`Ready`, and the core refuses a front that speaks another one (a half-upgraded install).

======================  ============  ==============================================================
message                 direction     answer
======================  ============  ==============================================================
:class:`Config`         core → front  :class:`Ready` once serving
:class:`AlertRequest`   front → core  :class:`Answer` (after the commit)
:class:`RejectRequest`  front → core  :class:`Answer`
:class:`HttpRequest`    front → core  :class:`HttpAnswer`
======================  ============  ==============================================================

``rid`` is the front's request number, echoed in the answer. ``started`` is the front's ``time.monotonic()``
at arrival (the same clock in both processes on Linux), so the core's latency histogram covers the whole
request. ``routes`` holds ``(rule name, target)`` or None per alert: the front matches the rules too (they are
pure), so the core only claims the dedupe key.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from agent.intake.auth import AuthState, SourceAuth
from agent.intake.request import Parsed, Source
from agent.intake.rules import HostTags, Rule, RuleSet

__all__ = [
    "VERSION",
    "AlertRequest",
    "Answer",
    "Config",
    "FrameReader",
    "FrontConfig",
    "HttpAnswer",
    "HttpRequest",
    "LinkError",
    "Ready",
    "RejectRequest",
    "core_reader",
    "encode",
    "front_reader",
    "recv_frame",
]

VERSION = 1

_HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024  # far above any body the front accepts; a longer length means a broken link


class LinkError(ValueError):
    """A frame that is not a message of the link's schema (or a corrupt stream); the text names what is wrong."""


# -- front → core -------------------------------------------------------------------------------------------
class Ready(msgspec.Struct, tag="ready", array_like=True, frozen=True):
    pid: int
    version: int


class AlertRequest(msgspec.Struct, tag="alert", array_like=True, frozen=True):
    rid: int
    source: str
    client: str
    started: float
    parsed: list[Parsed]
    routes: list[tuple[str, str] | None]


class RejectRequest(msgspec.Struct, tag="reject", array_like=True, frozen=True):
    rid: int
    source: str
    status: int
    code: str
    reason: str
    client: str
    size: int


class HttpRequest(msgspec.Struct, tag="http", array_like=True, frozen=True):
    rid: int
    method: str
    path: str
    query: bytes
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    body: bytes


FromFront = Ready | AlertRequest | RejectRequest | HttpRequest


# -- core → front -------------------------------------------------------------------------------------------
class Config(msgspec.Struct, tag="config", array_like=True, frozen=True):
    """The front's whole configuration (secrets never touch argv or env), as plain typed fields."""

    version: int
    sources: list[tuple[str, str, AuthState]]  # (name, format, how its requests authenticate)
    max_body_bytes: int
    rules: list[Rule]
    hosts_by_name: dict[str, tuple[str, ...]]
    hosts_by_address: dict[str, tuple[str, ...]]
    graceful_timeout: int
    header_timeout: float
    body_timeout: float
    tls: dict[str, str] | None


class Answer(msgspec.Struct, tag="answer", array_like=True, frozen=True):
    rid: int
    status: int
    body: dict[str, Any]


class HttpAnswer(msgspec.Struct, tag="http_answer", array_like=True, frozen=True):
    rid: int
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


FromCore = Config | Answer | HttpAnswer


@dataclass(frozen=True)
class FrontConfig:
    """Everything the front process needs, as the objects it uses (sent as :class:`Config`)."""

    sources: dict[str, Source]
    max_body_bytes: int
    rules: RuleSet
    hosts: HostTags
    graceful_timeout: int = 10  # seconds the front gives requests in flight when it is asked to stop
    header_timeout: float = 10.0  # request line + headers must arrive within this (agent/intake/slowguard.py)
    body_timeout: float = 30.0  # the whole body within this after the headers
    tls: dict[str, str] | None = None  # {"cert": PATH, "key": PATH, "client_ca": PATH?}: HTTPS, mTLS with client_ca

    def message(self) -> Config:
        return Config(VERSION, [(s.name, s.format, s.auth.state()) for s in self.sources.values()],
                      self.max_body_bytes, list(self.rules.rules), self.hosts.by_name, self.hosts.by_address,
                      self.graceful_timeout, self.header_timeout, self.body_timeout, self.tls)

    @classmethod
    def from_message(cls, msg: Config) -> FrontConfig:
        if msg.version != VERSION:
            raise LinkError(f"the core speaks link version {msg.version}, this front {VERSION}")
        sources = {name: Source(name, fmt, SourceAuth.restore(state)) for name, fmt, state in msg.sources}
        return cls(sources, msg.max_body_bytes, RuleSet(list(msg.rules)),
                   HostTags.from_maps(msg.hosts_by_name, msg.hosts_by_address), msg.graceful_timeout,
                   msg.header_timeout, msg.body_timeout, msg.tls)


_ENCODER = msgspec.msgpack.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """One frame: the length, then the message."""
    body = _ENCODER.encode(message)
    return _HEADER.pack(len(body)) + body


M = TypeVar("M")


class FrameReader(Generic[M]):
    """Splits a byte stream into typed messages; keeps an incomplete tail for the next :meth:`feed`.

    A frame that does not decode is handed to ``on_error`` with a :class:`LinkError` and skipped (the framing
    is intact, so the next frame still reads); a length above :data:`MAX_FRAME` raises (the stream is lost).
    """

    def __init__(self, decoder: msgspec.msgpack.Decoder[M], on_error: Callable[[LinkError, int | None], None],
                 ) -> None:
        self._buf = bytearray()
        self._decoder = decoder
        self._on_error = on_error

    def feed(self, data: bytes) -> list[M]:
        buf = self._buf
        buf += data
        out: list[M] = []
        pos, end = 0, len(buf)
        decode = self._decoder.decode
        with memoryview(buf) as view:
            while end - pos >= 4:
                (size,) = _HEADER.unpack_from(buf, pos)
                if size > MAX_FRAME:
                    raise LinkError(f"link frame of {size} bytes: the stream is corrupt")
                if end - pos - 4 < size:
                    break
                error: LinkError | None = None
                with view[pos + 4:pos + 4 + size] as frame:
                    try:
                        out.append(decode(frame))
                    except msgspec.DecodeError as exc:
                        error, rid = _explain(frame, exc), _request_number(frame)
                if error is not None:
                    self._on_error(error, rid)
                pos += 4 + size
        del buf[:pos]
        return out


def _explain(frame: memoryview, exc: msgspec.DecodeError) -> LinkError:
    if bytes(frame[:1]) == b"\x80":  # PROTO opcode: what the old link sent
        return LinkError(f"link frame is a pickle, not a message of link version {VERSION}: refused unread")
    kind = _kind(frame)
    return LinkError(f"link frame refused ({f'kind {kind!r}: ' if kind else ''}{exc})")


def _generic(frame: memoryview) -> Any:
    try:
        return msgspec.msgpack.decode(frame)  # plain data only: MessagePack cannot name code
    except msgspec.DecodeError:
        return None


def _kind(frame: memoryview) -> str | None:
    value = _generic(frame)
    return str(value[0])[:40] if isinstance(value, list) and value else None


def _request_number(frame: memoryview) -> int | None:
    """The ``rid`` of a refused request, so its sender gets an answer instead of waiting forever."""
    value = _generic(frame)
    if isinstance(value, list) and len(value) > 1 and type(value[1]) is int:
        return value[1]
    return None


FROM_FRONT: msgspec.msgpack.Decoder[FromFront] = msgspec.msgpack.Decoder(FromFront)
FROM_CORE: msgspec.msgpack.Decoder[FromCore] = msgspec.msgpack.Decoder(FromCore)


def core_reader(on_error: Callable[[LinkError, int | None], None]) -> FrameReader[FromFront]:
    """The core's reader of what the front sends (untrusted: every field type-checked)."""
    return FrameReader(FROM_FRONT, on_error)


def front_reader(on_error: Callable[[LinkError, int | None], None]) -> FrameReader[FromCore]:
    return FrameReader(FROM_CORE, on_error)


def recv_frame(sock: socket.socket, decoder: msgspec.msgpack.Decoder[M]) -> M:
    """Read exactly one message from a blocking socket (the start-up handshake); EOFError when it closed,
    :class:`LinkError` when it is not a message ``decoder`` accepts."""
    header = _recv_exactly(sock, 4)
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise LinkError(f"link frame of {size} bytes: the stream is corrupt")
    data = _recv_exactly(sock, size)
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise _explain(memoryview(data), exc) from None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the link closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
