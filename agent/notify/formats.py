"""Payloads in the shape each product documents, and an e-mail message. Pure functions of a :class:`Notice`.

- Slack incoming webhook: ``text`` (the notification fallback) + Block Kit ``blocks``: a ``header`` (plain_text,
  ≤ 150 characters), ``section`` blocks (mrkdwn text ≤ 3000 characters; ``fields`` ≤ 10 items of ≤ 2000
  characters), an ``actions`` block with a link ``button`` (https://api.slack.com/messaging/webhooks,
  https://api.slack.com/reference/block-kit/blocks).
- Mattermost incoming webhook: ``text`` and/or Slack-compatible ``attachments`` whose ``fallback`` is required
  (https://developers.mattermost.com/integrate/webhooks/incoming/,
  https://developers.mattermost.com/integrate/reference/message-attachments/).
- Microsoft Teams incoming webhook / Workflows: a ``message`` whose one attachment has ``contentType``
  ``application/vnd.microsoft.card.adaptive`` and an Adaptive Card (``TextBlock``, ``FactSet``,
  ``Action.OpenUrl``) as ``content`` (https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/
  how-to/connectors-using, https://adaptivecards.io/explorer/); Teams refuses payloads over 28 KB.
Texts are cut to the documented limits here, so a long plan never makes a notice undeliverable.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from agent.notify.events import Notice

__all__ = ["TEAMS_MAX_BYTES", "email_message", "mattermost_payload", "payload_for", "slack_payload",
           "teams_payload"]

TEAMS_MAX_BYTES = 28 * 1024
_COLOURS = {"info": "#2E7D32", "warning": "#F9A825", "critical": "#C62828"}
_TEAMS_COLOURS = {"info": "Good", "warning": "Warning", "critical": "Attention"}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plan_text(notice: Notice, limit: int) -> str:
    return _cut("\n".join(notice.detail), limit)


def slack_payload(notice: Notice) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(notice.title, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(notice.summary, 3000)}},
    ]
    if notice.facts:
        blocks.append({"type": "section", "fields": [
            {"type": "mrkdwn", "text": _cut(f"*{k}*\n{v}", 2000)} for k, v in notice.facts[:10]]})
    if notice.detail:
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                   "text": "```" + _plan_text(notice, 2990) + "```"}})
    if notice.link:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in the console"}, "url": notice.link}]})
    return {"text": _cut(f"{notice.title}: {notice.summary}", 3000), "blocks": blocks}


def mattermost_payload(notice: Notice) -> dict[str, Any]:
    attachment: dict[str, Any] = {
        "fallback": _cut(f"{notice.title}: {notice.summary}", 3000),
        "color": _COLOURS.get(notice.severity, _COLOURS["info"]),
        "title": notice.title,
        "text": notice.summary + ("\n```\n" + _plan_text(notice, 8000) + "\n```" if notice.detail else ""),
        "fields": [{"title": k, "value": v, "short": True} for k, v in notice.facts],
    }
    if notice.link:
        attachment["title_link"] = notice.link
    return {"username": "containment-agent", "text": f"**{notice.title}**", "attachments": [attachment]}


def teams_payload(notice: Notice) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": notice.title, "weight": "Bolder", "size": "Medium", "wrap": True,
         "color": _TEAMS_COLOURS.get(notice.severity, "Default")},
        {"type": "TextBlock", "text": notice.summary, "wrap": True},
    ]
    if notice.facts:
        body.append({"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in notice.facts]})
    if notice.detail:
        body.append({"type": "TextBlock", "text": _plan_text(notice, 12000), "wrap": True,
                     "fontType": "Monospace", "size": "Small"})
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": "1.4", "body": body}
    if notice.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open in the console", "url": notice.link}]
    return {"type": "message", "attachments": [
        {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}]}


def payload_for(kind: str, notice: Notice) -> dict[str, Any]:
    return {"slack": slack_payload, "mattermost": mattermost_payload, "teams": teams_payload}[kind](notice)


def email_message(notice: Notice, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """Plain text (readable on a phone at 3 a.m., no HTML to render); the subject says how urgent."""
    msg = EmailMessage()
    prefix = {"critical": "[ACTION NEEDED] ", "warning": "[DECISION NEEDED] "}.get(notice.severity, "")
    msg["Subject"] = _cut(prefix + notice.title, 200)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to the agent
    lines = [notice.summary, ""]
    lines += [f"{k}: {v}" for k, v in notice.facts]
    if notice.detail:
        lines += ["", "Plan (exactly what will run once approved):", *(f"  {line}" for line in notice.detail)]
    if notice.link:
        lines += ["", f"Open in the console (login required): {notice.link}"]
    lines += ["", "-- ", "containment-agent: this notice repeats an audit record; the audit log is authoritative."]
    msg.set_content("\n".join(lines))
    return msg
