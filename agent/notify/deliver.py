"""Sending one notice over one channel: SMTP (STARTTLS or implicit TLS, optional login) or an HTTPS webhook POST.

Every library error becomes :class:`DeliveryError`, marked ``permanent`` when retrying cannot help (the server
refused our credentials or the payload, 4xx other than 408/429) and transient otherwise. Messages never carry
the password or the webhook URL (its path is the token): only the channel's name, host and the status.
"""

from __future__ import annotations

import json
import smtplib
import ssl
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from agent.notify.config import Channel
from agent.notify.events import Notice
from agent.notify.formats import TEAMS_MAX_BYTES, email_message, payload_for

__all__ = ["DeliveryError", "deliver"]


class DeliveryError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


def deliver(channel: Channel, notice: Notice, *, ssl_context: ssl.SSLContext | None = None) -> str:
    """Send; return a short description of the outcome for the audit record (e.g. ``250 accepted``)."""
    if channel.kind == "smtp":
        return _smtp(channel, notice, ssl_context)
    return _webhook(channel, notice, ssl_context)


def _context(channel: Channel) -> ssl.SSLContext:
    """Certificates are always verified: against ``ca_file`` when the channel names one, else the system's."""
    return ssl.create_default_context(cafile=channel.ca_file or None)


def _smtp(channel: Channel, notice: Notice, ctx: ssl.SSLContext | None) -> str:
    msg = email_message(notice, channel.sender, channel.recipients)
    context = ctx or _context(channel)
    try:
        if channel.tls:
            client: smtplib.SMTP = smtplib.SMTP_SSL(channel.host, channel.port, timeout=channel.timeout,
                                                    context=context)
        else:
            client = smtplib.SMTP(channel.host, channel.port, timeout=channel.timeout)
        with client:
            client.ehlo()
            if channel.starttls and not channel.tls:
                client.starttls(context=context)
                client.ehlo()
            if channel.password is not None:
                client.login(channel.username, channel.password.resolve().reveal())
            refused = client.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"smtp {channel.host}:{channel.port}: login refused ({exc.smtp_code})",
                            permanent=True) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError(f"smtp {channel.host}:{channel.port}: server offers no STARTTLS; not sending "
                            "credentials or notices in clear", permanent=True) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"smtp {channel.host}: every recipient refused ({len(exc.recipients)})",
                            permanent=True) from None
    except smtplib.SMTPResponseException as exc:
        permanent = 500 <= exc.smtp_code < 600
        raise DeliveryError(f"smtp {channel.host}:{channel.port}: {exc.smtp_code}", permanent=permanent) from None
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        raise DeliveryError(f"smtp {channel.host}:{channel.port}: {type(exc).__name__}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
    if refused:
        return f"accepted for {len(channel.recipients) - len(refused)} of {len(channel.recipients)} recipients"
    return f"accepted for {len(channel.recipients)} recipient(s)"


def _webhook(channel: Channel, notice: Notice, ctx: ssl.SSLContext | None) -> str:
    assert channel.url is not None
    url = channel.url.resolve().reveal()
    where = f"{channel.kind} webhook {urlsplit(url).hostname or '?'}"  # never the path: it is the token
    body = json.dumps(payload_for(channel.kind, notice)).encode()
    if channel.kind == "teams" and len(body) > TEAMS_MAX_BYTES:
        raise DeliveryError(f"{where}: payload {len(body)} bytes exceeds Teams' 28 KB", permanent=True)
    try:
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "containment-agent"})
    except ValueError:  # its message would quote the URL, i.e. the token
        raise DeliveryError(f"{channel.kind} webhook: the configured URL is not a valid http(s) URL (not shown)",
                            permanent=True) from None
    if urlsplit(url).scheme not in ("http", "https"):
        raise DeliveryError(f"{channel.kind} webhook: only http(s) URLs are posted to", permanent=True)
    try:
        context = ctx or (_context(channel) if urlsplit(url).scheme == "https" else None)
        with urllib.request.urlopen(request, timeout=channel.timeout, context=context) as response:
            return f"{response.status} accepted by {where}"
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response (and its socket) open
        permanent = 400 <= exc.code < 500 and exc.code not in (408, 429)
        raise DeliveryError(f"{where}: HTTP {exc.code}", permanent=permanent) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        raise DeliveryError(f"{where}: {type(exc).__name__}: {reason}") from None
