"""The webhook's request checks, without HTTP and without the store: size, source, signature, JSON, format.

Why a module of its own: these checks run in the daemon's HTTP front process (see :mod:`agent.intake.front`),
which must start fast and hold no database, and in-process behind :func:`agent.intake.app.create_app`. Both
call the same functions, so both answer the same 4xx for the same request. Nothing here writes anything: the
caller audits a rejection (:class:`IntakeRejected`) and stores what :func:`parse_alerts` returns.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from agent.intake.auth import AuthFailed, SourceAuth
from agent.intake.model import MalformedAlert, NormalizedAlert
from agent.intake.normalizers import LINE_FORMATS, normalize

__all__ = ["IntakeRejected", "Parsed", "Source", "asgi_chunks", "find_source", "parse_alerts", "read_body"]


@dataclass
class IntakeRejected(Exception):
    """A request refused before anything was stored; ``status`` is the HTTP answer."""

    status: int
    reason: str
    code: str  # metric/audit label: unknown_source | too_large | unauthenticated | invalid_json | malformed |
    # media_type

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Source:
    """A configured alert source: its name (the URL's last segment), payload format and authenticator."""

    name: str
    format: str
    auth: SourceAuth


class Parsed(NamedTuple):
    """One normalised alert of a request, with what is stored beside it."""

    alert: NormalizedAlert
    raw: dict[str, Any]  # {"payload": the source's JSON for this alert, "normalized": the normaliser's extras}
    digest: str  # SHA-256 of the whole request body


def find_source(sources: Mapping[str, Source], name: str) -> Source:
    """The source named in the URL, or 404 naming the configured ones."""
    found = sources.get(name)
    if found is None:
        raise IntakeRejected(404, f"unknown alert source {name[:80]!r} (configured: "
                                  f"{', '.join(sorted(sources)) or 'none'})", "unknown_source")
    return found


async def read_body(headers: Mapping[str, str], chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The request body, refused with 413 as soon as the declared or the streamed size exceeds ``limit``."""
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise IntakeRejected(400, "Content-Length is not a number", "malformed")
        if int(length) > limit:
            raise IntakeRejected(413, f"body of {length} bytes exceeds the limit of {limit} bytes", "too_large")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise IntakeRejected(413, f"body exceeds the limit of {limit} bytes", "too_large")
        parts.append(chunk)
    return b"".join(parts)


async def asgi_chunks(receive: Any) -> AsyncIterator[bytes]:
    """The body chunks of an ASGI HTTP request; a client that leaves mid-body is a malformed request."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise IntakeRejected(400, "client disconnected before the body was complete", "malformed")
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


_JSON_TYPES = ("application/json", "application/x-ndjson", "application/jsonl", "text/plain",
               "application/x-www-form-urlencoded")


def check_content_type(headers: Mapping[str, str]) -> None:
    """Refuse bodies declared as something other than JSON (415), naming what was sent.

    Accepted: ``application/json`` (and ``+json`` types), JSON lines (``application/x-ndjson``), and two types
    real senders use for JSON bodies: ``text/plain`` (curl-based shippers, Wazuh custom scripts) and
    ``application/x-www-form-urlencoded`` (curl ``-d`` without ``-H``). A missing header is accepted.
    """
    value = headers.get("content-type")
    if not value:
        return
    media = value.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith("+json"):
        return
    raise IntakeRejected(415, f"Content-Type {media[:60]!r} is not JSON (send application/json)", "media_type")


def parse_alerts(source: Source, headers: Mapping[str, str], body: bytes, query: str = "") -> list[Parsed]:
    """Authenticate, parse and normalise one request body (no I/O; raises :class:`IntakeRejected`)."""
    try:
        source.auth.check(headers, body, query)
    except AuthFailed as exc:
        raise IntakeRejected(401, str(exc), "unauthenticated") from None
    check_content_type(headers)
    lines = source.format in LINE_FORMATS
    try:
        if lines:
            from agent.intake.normalizers.suricata import parse_lines
            payload: Any = parse_lines(body)
        else:
            payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise IntakeRejected(400, f"body is not valid JSON: {str(exc)[:120]}", "invalid_json") from None
    except MalformedAlert as exc:
        raise IntakeRejected(400, str(exc)[:500], "invalid_json") from None
    try:
        alerts = normalize(source.format, payload, source.name)
    except (MalformedAlert, RecursionError) as exc:
        raise IntakeRejected(400, str(exc)[:500], "malformed") from None
    digest = hashlib.sha256(body).hexdigest()
    for alert in alerts:
        if alert.key:
            alert.raw["key"] = alert.key
    if lines:
        events = [e for e in payload if not isinstance(e, dict) or e.get("event_type") == "alert"]
        return [Parsed(alert, {"payload": events[i] if i < len(events) and isinstance(events[i], dict) else None,
                               "normalized": alert.raw}, digest) for i, alert in enumerate(alerts)]
    if len(alerts) == 1:
        return [Parsed(alerts[0], {"payload": payload, "normalized": alerts[0].raw}, digest)]
    return [Parsed(alert, {"payload": _element(payload, i), "normalized": alert.raw}, digest)
            for i, alert in enumerate(alerts)]


def _element(payload: Any, i: int) -> Any:
    """The part of a batched payload (Alertmanager, Elastic) that carried alert ``i``."""
    if isinstance(payload, dict) and isinstance(payload.get("alerts"), list) and i < len(payload["alerts"]):
        return payload["alerts"][i]
    return payload
