"""A chat incoming-webhook receiver on loopback that accepts only what each product documents.

Failures first — each check cites what it models:
- Slack (https://api.slack.com/messaging/webhooks; Block Kit reference https://api.slack.com/reference/block-kit/
  blocks): a message needs ``text`` or ``blocks``; at most 50 blocks; ``header`` text is ``plain_text`` ≤ 150
  characters; ``section`` needs ``text`` or ``fields``, text ≤ 3000, ≤ 10 fields of ≤ 2000 characters; button
  text ``plain_text`` ≤ 75, ``url`` ≤ 3000. Slack answers an invalid message ``400 invalid_blocks`` /
  ``400 no_text``.
- Mattermost (https://developers.mattermost.com/integrate/webhooks/incoming/ and .../reference/
  message-attachments/): ``text`` or ``attachments`` required; each attachment's ``fallback`` is required;
  ``fields`` entries have ``title``/``value``/``short``. Mattermost answers ``400`` on an unparsable payload.
- Microsoft Teams incoming webhook (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/
  how-to/connectors-using; Adaptive Card schema https://adaptivecards.io/explorer/): ``type: message``, exactly
  the documented attachment envelope (``contentType`` ``application/vnd.microsoft.card.adaptive``, ``content``
  an ``AdaptiveCard`` with ``version``); ``TextBlock`` needs ``text``; ``FactSet`` needs ``facts`` of
  ``title``/``value`` strings; ``Action.OpenUrl`` needs ``url``; payloads over 28 KB are refused (413 here).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Invalid(Exception):
    pass


def check_slack(body: dict[str, Any]) -> None:
    blocks = body.get("blocks")
    if not body.get("text") and not blocks:
        raise Invalid("no_text")
    if blocks is None:
        return
    if not isinstance(blocks, list) or len(blocks) > 50:
        raise Invalid("invalid_blocks: at most 50 blocks")
    for b in blocks:
        kind = b.get("type")
        if kind == "header":
            t = b.get("text") or {}
            if t.get("type") != "plain_text" or not 0 < len(t.get("text", "")) <= 150:
                raise Invalid("invalid_blocks: header text must be plain_text of 1..150 characters")
        elif kind == "section":
            text, fields = b.get("text"), b.get("fields")
            if text is None and not fields:
                raise Invalid("invalid_blocks: section needs text or fields")
            if text is not None and (text.get("type") not in ("mrkdwn", "plain_text") or
                                     not 0 < len(text.get("text", "")) <= 3000):
                raise Invalid("invalid_blocks: section text 1..3000 characters")
            if fields is not None and (len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields)):
                raise Invalid("invalid_blocks: at most 10 fields of 2000 characters")
        elif kind == "actions":
            for el in b.get("elements", []):
                if el.get("type") != "button" or (el.get("text") or {}).get("type") != "plain_text" \
                        or len(el["text"].get("text", "")) > 75 or len(el.get("url", "")) > 3000:
                    raise Invalid("invalid_blocks: button")
        else:
            raise Invalid(f"invalid_blocks: unexpected block type {kind!r}")


def check_mattermost(body: dict[str, Any]) -> None:
    if not body.get("text") and not body.get("attachments"):
        raise Invalid("text or attachments required")
    for a in body.get("attachments") or []:
        if not a.get("fallback"):
            raise Invalid("attachment fallback is required")
        for f in a.get("fields") or []:
            if set(f) - {"title", "value", "short"} or "title" not in f or "value" not in f:
                raise Invalid("attachment field needs title and value")


def check_teams(body: dict[str, Any], size: int) -> None:
    if size > 28 * 1024:
        raise Invalid("413: payload over 28 KB")
    if body.get("type") != "message" or not isinstance(body.get("attachments"), list) or \
            len(body["attachments"]) != 1:
        raise Invalid("a message with one attachment is expected")
    att = body["attachments"][0]
    if att.get("contentType") != "application/vnd.microsoft.card.adaptive":
        raise Invalid("contentType must be application/vnd.microsoft.card.adaptive")
    card = att.get("content") or {}
    if card.get("type") != "AdaptiveCard" or not card.get("version"):
        raise Invalid("content must be an AdaptiveCard with a version")
    for el in card.get("body") or []:
        kind = el.get("type")
        if kind == "TextBlock" and not isinstance(el.get("text"), str):
            raise Invalid("TextBlock.text is required")
        if kind == "FactSet" and not all(isinstance(f.get("title"), str) and isinstance(f.get("value"), str)
                                         for f in el.get("facts") or [None]):
            raise Invalid("FactSet.facts need title and value strings")
        if kind not in ("TextBlock", "FactSet", "ColumnSet", "Container", "Image", "ActionSet"):
            raise Invalid(f"unknown element {kind!r}")
    for act in card.get("actions") or []:
        if act.get("type") == "Action.OpenUrl" and not act.get("url"):
            raise Invalid("Action.OpenUrl.url is required")


class ChatReceiver:
    """POST /slack/<token>, /mattermost/<token>, /teams/<token>; answers like the product; keeps what it got."""

    def __init__(self, status_override: int | None = None) -> None:
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.rejected: list[tuple[str, str]] = []
        self.status_override = status_override
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(size)
                kind = self.path.strip("/").split("/")[0]
                if receiver.status_override is not None:
                    self._answer(receiver.status_override, b"unavailable")
                    return
                try:
                    if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                        raise Invalid("content type must be application/json")
                    body = json.loads(raw)
                    {"slack": lambda: check_slack(body), "mattermost": lambda: check_mattermost(body),
                     "teams": lambda: check_teams(body, size)}[kind]()
                except (Invalid, ValueError, KeyError) as exc:
                    receiver.rejected.append((kind, str(exc)))
                    self._answer(413 if str(exc).startswith("413") else 400, str(exc).encode())
                    return
                receiver.received.append((kind, body))
                self._answer(200, b"ok" if kind != "teams" else b"1")

            def _answer(self, code: int, text: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, kind: str, token: str = "T0KEN-SECRET-PATH") -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{token}"

    def __enter__(self) -> ChatReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
