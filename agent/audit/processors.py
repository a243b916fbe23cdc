"""The audit pipeline as structlog-compatible processors: ``(logger, method_name, event_dict) -> event_dict``.

Why processors: each concern (context, redaction, time, chaining) is a small pure function that can be tested
alone and reused in a plain structlog configuration; only :class:`agent.audit.writer.AuditLog`'s last step does
I/O. The order matters and is fixed by the writer: context → redaction → (under the log lock) timestamp →
chain.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import threading
import time
from collections.abc import Iterable, MutableMapping
from typing import Any

from agent.audit.canonical import RECORD_VERSION, encode_line
from agent.audit.redact import REDACTED, redact_value

__all__ = [
    "RESERVED_FIELDS",
    "ChainHead",
    "Chainer",
    "EventDict",
    "Redactor",
    "add_context",
    "add_timestamp",
    "utc_day",
    "utc_timestamp",
]

EventDict = MutableMapping[str, Any]

#: Fields the pipeline owns; callers may not pass them to ``record()``.
RESERVED_FIELDS = frozenset({"seq", "ts", "prev_hash", "hash", "v"})


class add_context:
    """Stamp who and where: ``actor`` (unless the event names one), ``host`` and ``pid``.

    Why: chain of custody needs to say which person and which process wrote each record.
    """

    def __init__(self, actor: str | None = None) -> None:
        self.actor = actor or _default_actor()
        self.host = socket.gethostname()

    def __call__(self, logger: object, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("actor", self.actor)
        event_dict.setdefault("host", self.host)
        event_dict.setdefault("pid", os.getpid())  # read per record: stays right after fork
        return event_dict


def _default_actor() -> str:
    for name in ("SUDO_USER", "USER", "LOGNAME"):
        value = os.environ.get(name)
        if value:
            return value
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (KeyError, ImportError):
        return f"uid:{os.getuid()}"


class Redactor:
    """Replace secrets by ``"***"``: secret-named keys, secret-shaped text, ``Secret`` objects, known values.

    ``known`` holds literal secret values the agent resolved (passwords from ``env:``/``file:`` references); any
    string containing one is masked wherever it appears, which catches libraries echoing a password into an
    exception message in a shape no pattern anticipates.
    """

    def __init__(self, known: Iterable[str] = ()) -> None:
        self._known: set[str] = set()
        self._lock = threading.Lock()
        for value in known:
            self.add_known(value)

    def add_known(self, value: Any) -> None:
        """Remember a literal secret (``str`` or anything with ``reveal()``); values under 4 characters are ignored."""
        text = value.reveal() if hasattr(value, "reveal") else value
        if isinstance(text, str) and len(text) >= 4:
            with self._lock:
                self._known = self._known | {text}

    def __call__(self, logger: object, method_name: str, event_dict: EventDict) -> EventDict:
        cleaned = redact_value(dict(event_dict))
        if self._known:
            cleaned = _scrub_known(cleaned, frozenset(self._known))
        event_dict.clear()
        event_dict.update(cleaned)
        return event_dict


def _scrub_known(value: Any, known: frozenset[str]) -> Any:
    if isinstance(value, str):
        for secret in known:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: _scrub_known(item, known) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub_known(item, known) for item in value]
    return value


def utc_timestamp(now: _dt.datetime | None = None) -> str:
    """UTC ISO-8601 with microseconds and a ``Z`` suffix, e.g. ``2026-11-23T09:40:00.123456Z``."""
    moment = now or _dt.datetime.now(_dt.UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_day_cache: tuple[int, str] = (-1, "")


def utc_day() -> str:
    """Today's UTC date as ``YYYY-MM-DD`` (cached per day: the writer asks for it on every record)."""
    global _day_cache  # noqa: PLW0603 - a per-process cache on the hot path, replaced whole
    number = int(time.time() // 86400)
    if number != _day_cache[0]:
        _day_cache = (number, time.strftime("%Y-%m-%d", time.gmtime(number * 86400)))
    return _day_cache[1]


def add_timestamp(logger: object, method_name: str, event_dict: EventDict) -> EventDict:
    """Set ``ts``. The writer calls it under the log lock so timestamps never go backwards along the chain."""
    event_dict["ts"] = utc_timestamp()
    return event_dict


class ChainHead:
    """Last ``seq`` and ``hash`` of the log: the state the next record chains onto."""

    __slots__ = ("hash", "seq")

    def __init__(self, seq: int = 0, hash: str = "0" * 64) -> None:
        self.seq = seq
        self.hash = hash


class Chainer:
    """Add ``seq`` and ``prev_hash``, then ``hash`` over the canonical body; advance the head.

    The encoded line is left in ``event_dict`` under the private key ``"__line__"`` for the writer (and removed
    by it), so the record is serialised exactly once.
    """

    def __init__(self, head: ChainHead) -> None:
        self.head = head

    def __call__(self, logger: object, method_name: str, event_dict: EventDict) -> EventDict:
        event_dict["v"] = RECORD_VERSION  # hash rule 2: another incident's record can be withheld from an export
        event_dict["seq"] = self.head.seq + 1
        event_dict["prev_hash"] = self.head.hash
        line, digest = encode_line(dict(event_dict))
        event_dict["hash"] = digest
        event_dict["__line__"] = line
        self.head.seq += 1
        self.head.hash = digest
        return event_dict

