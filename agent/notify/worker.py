"""The delivery loop: a daemon thread that sends due notices and audits every attempt.

It is the only place that talks to mail servers and chat services, so nothing on the containment path ever
waits for them: a dead SMTP server costs this thread a timeout, not a responder a delay. Each attempt becomes an
audit record (``notification.sent`` / ``notification.retry`` / ``notification.failed``) naming channel, event
and outcome — never the password or the webhook URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from agent.journal import AuditSink
from agent.notify.config import NotifyConfig
from agent.notify.deliver import DeliveryError, deliver
from agent.notify.events import Notice, notice_for
from agent.notify.outbox import Outbox

__all__ = ["NotifyWorker"]

_OWN_EVENTS = ("notification.",)  # our own audit records never become notices (no loops)


class NotifyWorker:
    """Wires audit records to the outbox (:meth:`on_record`) and delivers from it (:meth:`start`)."""

    def __init__(self, outbox: Outbox, config: NotifyConfig, audit: AuditSink, *,
                 enrich: Callable[[Notice, dict[str, Any]], Notice] | None = None, poll_seconds: float = 1.0,
                 send: Callable[..., str] = deliver) -> None:
        self.outbox, self.config, self.audit = outbox, config, audit
        self.enrich = enrich or (lambda notice, _record: notice)
        self.poll_seconds = poll_seconds
        self._send = send
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._channels = {c.name: c for c in config.channels}

    # -- recognising ------------------------------------------------------------------------------------
    def on_record(self, record: dict[str, Any]) -> None:
        """Audit listener: queue the notice this record calls for. Never raises into the audit path."""
        event = str(record.get("event", ""))
        if event.startswith(_OWN_EVENTS):
            return
        try:
            notice = notice_for(record, self.config.console_url)
            if notice is None or not self.config.channels_for(notice.event):
                return
            if self.outbox.enqueue(self.enrich(notice, record)):
                self._wake.set()
        except Exception as exc:  # noqa: BLE001 (a notification problem must never fail a containment)
            self.audit.record("notification.queue_failed", source_event=event, error=type(exc).__name__)

    # -- delivering -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.deliver_due()
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def deliver_due(self) -> int:
        """Send every due notice once; returns how many were sent. (Tests call this directly.)"""
        sent = 0
        for due in self.outbox.due():
            if self._stop.is_set():
                break
            channel = self._channels.get(due.channel)
            fields = {"channel": due.channel, "notice_event": due.notice.event, "title": due.notice.title,
                      "attempt": due.attempts + 1, "about": due.notice.key}
            if channel is None:  # removed from the configuration while queued
                self.outbox.failed(due.id, "channel no longer configured", permanent=True, attempts=due.attempts)
                self.audit.record("notification.failed", **fields, error="channel no longer configured")
                continue
            try:
                outcome = self._send(channel, due.notice)
            except DeliveryError as exc:
                gave_up = self.outbox.failed(due.id, str(exc), permanent=exc.permanent, attempts=due.attempts)
                self.audit.record("notification.failed" if gave_up else "notification.retry", **fields,
                                  error=str(exc), permanent=exc.permanent)
                continue
            except Exception as exc:  # noqa: BLE001 (e.g. a secret reference that no longer resolves)
                message = f"{type(exc).__name__}: {exc}"
                gave_up = self.outbox.failed(due.id, message, permanent=False, attempts=due.attempts)
                self.audit.record("notification.failed" if gave_up else "notification.retry", **fields,
                                  error=message)
                continue
            self.outbox.sent(due.id)
            self.audit.record("notification.sent", **fields, outcome=outcome)
            sent += 1
        return sent
