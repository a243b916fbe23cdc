"""Connecting notifications to a running daemon: the audit listener, the worker thread, the plan of an approval.

Kept apart from the daemon so the daemon names one call (:func:`start_notifications`) and a reader finds here
everything notifications need from the rest of the application.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from agent.notify.events import Notice
from agent.notify.outbox import Outbox
from agent.notify.worker import NotifyWorker

__all__ = ["approval_plan_lines", "start_notifications", "stop_notifications"]


def start_notifications(app: Any) -> NotifyWorker | None:
    """Start delivering notices for ``app`` (None when no channel is configured: nothing is queued)."""
    config = app.settings.notifications
    if not config.channels:
        return None
    worker = NotifyWorker(Outbox(app.store, config), config, app.audit,
                          enrich=lambda notice, record: _enrich(app, notice, record))
    app.audit.listeners.append(worker.on_record)
    worker.start()
    return worker


def stop_notifications(app: Any, worker: NotifyWorker | None) -> None:
    if worker is None:
        return
    if worker.on_record in app.audit.listeners:
        app.audit.listeners.remove(worker.on_record)
    worker.stop()


def _enrich(app: Any, notice: Notice, record: dict[str, Any]) -> Notice:
    if notice.event != "approval_pending" or notice.detail:
        return notice
    approval_id = str(record.get("approval_id") or "")
    return replace(notice, detail=approval_plan_lines(app, approval_id)) if approval_id else notice


def approval_plan_lines(app: Any, approval_id: str) -> list[str]:
    """The exact plan an approval will run, as the CLI plan shows it (effect per action; nothing connects).

    Rebuilt the way :func:`agent.approvals.plan_for` rebuilds it at approval time; if planning refuses now,
    the notice says so instead of a plan.
    """
    from agent.approvals import get_approval, plan_for

    try:
        plan, ttl, _reason = plan_for(app, get_approval(app.store, approval_id))
    except Exception as exc:  # noqa: BLE001 (a refusal is information for the approver, not an error here)
        return [f"(the plan cannot be built right now: {exc})"]
    lines = []
    for n, pa in enumerate(plan.actions, 1):
        lines.append(f"{n}. {pa.describe()}")
        lines += [f"   {s}" for s in pa.summary]
    lines += [f"note: {note}" for note in plan.notes]
    if ttl:
        lines.append(f"automatic release after {int(ttl.total_seconds())} s")
    return lines
