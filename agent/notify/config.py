"""The ``notifications:`` section of agent.yaml: where notices go and which events each channel wants.

Example (config/agent.yaml has the annotated version)::

    notifications:
      console_url: https://ir-agent.example.org:8443   # approval links point at the console, never at an API
      channels:
        soc-mail: {kind: smtp, host: smtp.example.org, port: 587, starttls: true, username: ir-agent,
                   password: env:SMTP_PASSWORD, from: ir-agent@example.org, to: [soc@example.org],
                   events: [approval_pending, action_failed, action_in_doubt, drift]}
        soc-teams: {kind: teams, url: env:TEAMS_WEBHOOK_URL, events: [approval_pending, drift]}

Webhook URLs carry their own token, so they are secrets too: ``env:``/``file:`` references only, never inline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.secrets import SecretRef, parse_ref
from agent.yamlsrc import Node

__all__ = ["EVENTS", "KINDS", "Channel", "NotifyConfig", "parse_notifications"]

# The closed vocabulary of notice kinds (agent.notify.events maps audit records onto them).
EVENTS = ("approval_pending", "action_done", "action_failed", "action_in_doubt", "drift", "ttl_release")
KINDS = ("smtp", "slack", "teams", "mattermost")
_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+")
_CHANNEL_FIELDS = {"kind", "events", "host", "port", "starttls", "tls", "username", "password", "from", "to",
                   "url", "timeout", "ca_file"}


@dataclass(frozen=True)
class Channel:
    name: str
    kind: str
    events: tuple[str, ...]
    url: SecretRef | None = None  # slack / teams / mattermost incoming webhook
    host: str = ""
    port: int = 587
    starttls: bool = True
    tls: bool = False  # implicit TLS (port 465)
    username: str = ""
    password: SecretRef | None = None
    sender: str = ""
    recipients: tuple[str, ...] = ()
    timeout: float = 10.0
    ca_file: str = ""  # a private CA bundle (internal mail server / Mattermost); default: the system's trust

    def wants(self, event: str) -> bool:
        return event in self.events


@dataclass(frozen=True)
class NotifyConfig:
    channels: tuple[Channel, ...] = ()
    console_url: str = ""
    retry_base_s: float = 30.0  # first retry after this, doubling, capped at retry_max_s
    retry_max_s: float = 3600.0
    max_attempts: int = 12
    extra: dict[str, str] = field(default_factory=dict)

    def channels_for(self, event: str) -> list[Channel]:
        return [c for c in self.channels if c.wants(event)]


def parse_notifications(node: Node | None) -> NotifyConfig:
    """Read and validate the section; every error names file, line and field."""
    if node is None:
        return NotifyConfig()
    node.mapping(allowed={"console_url", "channels", "retry_base_seconds", "retry_max_seconds", "max_attempts"})
    console = node.opt_str("console_url")
    if console and not re.match(r"https?://[^\s/]+", console):
        raise node.child("console_url").error(f"{console!r} is not an http(s) URL of the console")
    channels = []
    for name, ch in node.child("channels").items():
        channels.append(_channel(str(name), ch))
    base = node.get("retry_base_seconds")
    top = node.get("retry_max_seconds")
    attempts = node.get("max_attempts")
    return NotifyConfig(channels=tuple(channels), console_url=console.rstrip("/"),
                        retry_base_s=base.float_(minimum=0.1) if base else 30.0,
                        retry_max_s=top.float_(minimum=1.0) if top else 3600.0,
                        max_attempts=attempts.int_(minimum=1, maximum=1000) if attempts else 12)


def _channel(name: str, node: Node) -> Channel:
    node.mapping(allowed=_CHANNEL_FIELDS, required={"kind", "events"})
    kind = node.child("kind").str_()
    if kind not in KINDS:
        raise node.child("kind").error(f"{kind!r} is not a channel kind ({', '.join(KINDS)})")
    events = node.child("events").str_list()
    for i, event in enumerate(events):
        if event not in EVENTS:
            raise node.child("events").child(i).error(f"{event!r} is not an event ({', '.join(EVENTS)})")
    timeout = node.get("timeout")
    ca_node = node.get("ca_file")
    ca_file = ""
    if ca_node is not None:
        ca = Path(ca_node.str_())
        ca = ca if ca.is_absolute() else Path(node.doc.file).resolve().parent / ca
        if not ca.is_file():
            raise ca_node.error(f"{ca} does not exist (a PEM file of the CA certificates to trust)")
        ca_file = str(ca)
    common = {"name": name, "kind": kind, "events": tuple(events), "ca_file": ca_file,
              "timeout": timeout.float_(minimum=0.5) if timeout else 10.0}
    if kind != "smtp":
        for key in ("host", "port", "username", "password", "from", "to", "starttls", "tls"):
            if node.get(key) is not None:
                raise node.child(key).error(f"{kind} channels take a webhook url, not {key!r}")
        if node.get("url") is None:
            raise node.error(f"missing required field 'url' (env:NAME or file:PATH holding the {kind} webhook URL)")
        return Channel(url=_secret(node.child("url")), **common)  # type: ignore[arg-type]
    if node.get("url") is not None:
        raise node.child("url").error("smtp channels take host/port/from/to, not a url")
    for key in ("host", "from", "to"):
        if node.get(key) is None:
            raise node.error(f"missing required field '{key}'")
    sender = node.child("from").str_()
    if not _ADDRESS.fullmatch(sender):
        raise node.child("from").error(f"{sender!r} is not an e-mail address")
    recipients = node.child("to").str_list()
    for i, rcpt in enumerate(recipients):
        if not _ADDRESS.fullmatch(rcpt):
            raise node.child("to").child(i).error(f"{rcpt!r} is not an e-mail address")
    if not recipients:
        raise node.child("to").error("no recipients")
    tls = node.opt_bool("tls")
    starttls = node.opt_bool("starttls", default=not tls)
    if tls and starttls:
        raise node.child("starttls").error("choose implicit TLS (tls: true, port 465) or STARTTLS, not both")
    port = node.get("port")
    password = node.get("password")
    if password is not None and not (starttls or tls):
        raise password.error("a password is only sent over TLS: set starttls: true or tls: true")
    return Channel(host=node.child("host").address_or_hostname(),
                   port=port.int_(minimum=1, maximum=65535) if port else (465 if tls else 587),
                   starttls=starttls, tls=tls, username=node.opt_str("username"),
                   password=_secret(password) if password is not None else None, sender=sender,
                   recipients=tuple(recipients), **common)  # type: ignore[arg-type]


def _secret(node: Node) -> SecretRef:
    ref = parse_ref(node.str_(), Path(node.doc.file).resolve().parent)
    if ref is None:  # never echo the value: it may be the secret itself
        raise node.error("must be a secret reference (env:NAME or file:PATH); inline secrets are refused "
                         "(webhook URLs carry their own token)")
    return ref
