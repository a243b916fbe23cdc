"""The link between the daemon (the core) and its HTTP front process: messages and their framing.

Frames are a 4-byte big-endian length and a pickle; frames *from the front* are loaded with a restricted
unpickler that resolves only the alert types (:data:`FROM_FRONT_GLOBALS`), so a compromised front cannot make
the core call anything (+≈4 µs per alert frame). Why pickle: both ends are this code base, the link is a
socketpair the core creates and hands to the front process it starts (nobody else can connect to it), and the
payloads are our own types; pickle is several times cheaper than JSON for them, which matters at thousands of
alerts per second.

Messages (tuples; ``rid`` is the front's request number, echoed in the answer):

================================================================  ============  =================================
message                                                           direction     answer
================================================================  ============  =================================
``(CONFIG, FrontConfig)``                                         core → front  ``(READY, pid)`` once serving
``(ALERT, rid, source, client, started, [Parsed], [route])``      front → core  ``(rid, status, answer dict)``
``(REJECT, rid, source, status, code, reason, client, size)``     front → core  ``(rid, status, answer dict)``
``(HTTP, rid, method, path, query, headers, client, body)``       front → core  ``(rid, status, (headers, body))``
================================================================  ============  =================================

``started`` is the front's ``time.monotonic()`` at arrival (the same clock in both processes on Linux), so the
core's latency histogram covers the whole request. ``route`` is ``(rule name, target)`` or None per alert: the
front matches the rules too (they are pure), so the core only claims the dedupe key.
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Any

from agent.intake.request import Source
from agent.intake.rules import HostTags, RuleSet

__all__ = ["ALERT", "CONFIG", "HTTP", "READY", "REJECT", "FrameReader", "FrontConfig", "encode", "recv_frame"]

CONFIG, READY, ALERT, REJECT, HTTP = "config", "ready", "alert", "reject", "http"

_HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024  # far above any body the front accepts; a longer length means a broken link


@dataclass(frozen=True)
class FrontConfig:
    """Everything the front process needs, sent by the core over the link (secrets never touch argv or env)."""

    sources: dict[str, Source]
    max_body_bytes: int
    rules: RuleSet
    hosts: HostTags
    graceful_timeout: int = 10  # seconds the front gives requests in flight when it is asked to stop
    header_timeout: float = 10.0  # request line + headers must arrive within this (agent/intake/slowguard.py)
    body_timeout: float = 30.0  # the whole body within this after the headers
    tls: dict[str, str] | None = None  # {"cert": PATH, "key": PATH, "client_ca": PATH?}: HTTPS, mTLS with client_ca


# What may be named inside a frame from the front (everything else is data: tuples, dicts, str, bytes, numbers).
# A compromised front process could otherwise ask the core to call any importable function while unpickling.
FROM_FRONT_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("agent.intake.request", "Parsed"),
    ("agent.intake.model", "NormalizedAlert"),
    ("agent.intake.model", "_rebuild"),  # NormalizedAlert.__reduce__: rebuilds from plain fields
    ("datetime", "datetime"),
    ("datetime", "timezone"),
    ("datetime", "timedelta"),
})


class _FrontUnpickler(pickle.Unpickler):
    """The C unpickler, allowed to resolve only :data:`FROM_FRONT_GLOBALS` (pickle docs, "Restricting
    Globals"): data frames load at full speed; a frame naming any other global is refused before it runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in FROM_FRONT_GLOBALS:
            raise pickle.UnpicklingError(f"front link: {module}.{name} is not allowed in a frame")
        return super().find_class(module, name)


def loads_from_front(data: bytes | memoryview) -> Any:
    """Decode one frame that came from the front process (untrusted: restricted globals)."""
    return _FrontUnpickler(io.BytesIO(data)).load()


def encode(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


class FrameReader:
    """Splits a byte stream into messages; keeps an incomplete tail for the next :meth:`feed`."""

    def __init__(self, *, from_front: bool = False) -> None:
        self._buf = bytearray()
        self._loads = loads_from_front if from_front else pickle.loads

    def feed(self, data: bytes) -> list[Any]:
        buf = self._buf
        buf += data
        out, pos, end = [], 0, len(buf)
        with memoryview(buf) as view:
            while end - pos >= 4:
                (size,) = _HEADER.unpack_from(buf, pos)
                if size > MAX_FRAME:
                    raise ValueError(f"link frame of {size} bytes: the stream is corrupt")
                if end - pos - 4 < size:
                    break
                out.append(self._loads(view[pos + 4:pos + 4 + size]))
                pos += 4 + size
        del buf[:pos]
        return out


def recv_frame(sock: socket.socket, *, from_front: bool = False) -> Any:
    """Read exactly one message from a blocking socket (the start-up handshake); EOFError when it closed."""
    header = _recv_exactly(sock, 4)
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"link frame of {size} bytes: the stream is corrupt")
    data = _recv_exactly(sock, size)
    return loads_from_front(data) if from_front else pickle.loads(data)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    parts, left = [], size
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the link closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)
