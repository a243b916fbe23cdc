"""The Celery application both sides share: the engine sends ``agent.run_action`` to a site's queue, a worker of
that site consumes it. Only the broker and these settings are shared — no result backend: the journal is where
outcomes live (the engine reads them there), so a lost result can never make an action look lost.

Delivery settings, and why (Celery 5: docs.celeryq.dev/en/stable/userguide/configuration.html, the glossary
docs.celeryq.dev/en/v5.6.3/_sources/glossary.rst.txt, userguide/tasks.rst and userguide/optimizing.rst):

- ``task_acks_late``: late acknowledgment means the message "will be redelivered to another worker in the event
  of the machine losing power, or the worker instance being killed mid-execution"; with AMQP "the transaction
  fails when the connection/channel is closed (or lost)" (glossary). So a SIGKILLed worker's action comes back.
- ``task_reject_on_worker_lost``: tasks.rst notes that "the worker will acknowledge the message if the child
  process executing the task is terminated … even when acks_late is enabled"; this setting rejects and requeues
  it instead. The configuration reference warns it can cause message loops: the loop is broken by the journal's
  claim — a redelivered action that is settled, or held by a live worker, is dropped (:mod:`agent.workers.lease`).
- ``worker_prefetch_multiplier = 1``: "if you have many expensive tasks with a long duration you would want the
  multiplier value to be 1, which means it will only reserve one unacknowledged task per worker process at a
  time" (optimizing guide): a busy worker does not sit on its site-mates' work, and a killed worker strands at
  most the messages it was running.
- ``confirm_publish`` (py-amqp transport option): the engine's publish returns only once the broker has the
  message (RabbitMQ publisher confirms), so "queued" means queued.
- JSON only: a worker never unpickles what arrives from the broker.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from agent.errors import ConfigError

from agent.workers.config import WorkersConfig, queue_for

__all__ = ["RUN_ACTION", "check_login", "login_refused", "make_celery", "send_action"]

RUN_ACTION = "agent.run_action"  # the one task: (action_id, args) — everything else is read from the journal


def make_celery(cfg: WorkersConfig, *, name: str = "containment-agent") -> Any:
    from agent.extras import require
    require("celery", "workers: (per-site workers)")
    from celery import Celery
    app = Celery(name, broker=cfg.broker_url(), set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_default_delivery_mode="persistent",
        broker_transport_options={"confirm_publish": True},
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a broker restart is waited out, not fatal
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        # a late-acked task keeps running when the broker connection drops; its message comes back to the queue
        # and the redelivery is dropped while this worker's lease lives (explicit: Celery warns when unset)
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def send_action(app: Any, site: str, action_id: str, args: dict[str, Any]) -> None:
    """Queue one journaled action for ``site``'s workers (durable queue, persistent message, confirmed)."""
    queue = queue_for(site)
    # kombu retries a few times within the call; the caller (agent/workers/dispatch.py) retries for longer
    app.send_task(RUN_ACTION, args=[action_id, args], queue=queue, routing_key=queue, retry=True,
                  retry_policy={"max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1})


def login_refused(cfg: WorkersConfig, exc: BaseException) -> ConfigError | None:
    """A ConfigError naming ``workers.broker_password`` when ``exc`` is the broker refusing the login (RabbitMQ
    closes the connection with 403 ACCESS_REFUSED: https://www.rabbitmq.com/docs/access-control), else None.
    Retrying cannot fix a password, so callers stop at once on it. Names the user, broker and the password's
    reference (``env:NAME`` / ``file:PATH``), never the password."""
    from amqp.exceptions import AccessRefused
    if not isinstance(exc, AccessRefused):
        return None
    parts = urlsplit(cfg.broker)
    where = f"{parts.hostname}:{parts.port or 5672}{parts.path or '/'}"
    ref = f" ({cfg.password})" if cfg.password is not None else " (none is set)"
    return ConfigError(f"the broker at {where} refused the login of user {parts.username or 'guest'!r} "
                       f"(ACCESS_REFUSED): check the password{ref} and that the user may use that virtual host",
                       field="workers.broker_password")


def check_login(app: Any, cfg: WorkersConfig) -> None:
    """Log in to the broker once before serving: a refused login is a configuration error said in one line (not
    Celery's traceback); a broker that is not up yet is waited for by Celery itself, as before."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:  # noqa: BLE001 - only a refused login is ours to report; Celery retries the rest
        refused = login_refused(cfg, exc)
        if refused is not None:
            raise refused from None
