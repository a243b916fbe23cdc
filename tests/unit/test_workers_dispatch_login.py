"""The central's publish (agent/workers/dispatch.py ``_send``) retries an unreachable broker for a minute — a
restart takes seconds — but not a refused login: RabbitMQ's 403 ACCESS_REFUSED is a wrong password, and a
responder should read that at once, naming ``workers.broker_password``, not after 60 s of retries."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace as NS

import pytest
from amqp.exceptions import AccessRefused

from agent.secrets import parse_ref
from agent.workers import celery_app, dispatch
from agent.workers.config import WorkersConfig


def dispatcher(tmp_path, monkeypatch) -> dispatch.SiteDispatcher:
    monkeypatch.setenv("MQ_PW", "s3cret")
    cfg = WorkersConfig(broker="amqp://agent@127.0.0.1:1/containment", password=parse_ref("env:MQ_PW", tmp_path),
                        sites=("boston",))
    d = dispatch.SiteDispatcher(cfg, NS(store=None, audit=None), threading.Event())
    d._ready.set()
    d._warming = True  # no warm-up connection in a unit test
    return d


def test_a_refused_login_is_not_retried_and_names_the_field(tmp_path, monkeypatch):
    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AccessRefused("ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN")
    monkeypatch.setattr(celery_app, "send_action", refuse)
    d = dispatcher(tmp_path, monkeypatch)
    started = time.monotonic()
    with pytest.raises(AccessRefused) as info:
        d._send("boston", "a1", {})
    assert len(calls) == 1 and time.monotonic() - started < 1
    refused = celery_app.login_refused(d.cfg, info.value)
    assert refused is not None and refused.field == "workers.broker_password"
    assert "s3cret" not in str(refused)
    assert "127.0.0.1:1/containment" in str(refused) and "'agent'" in str(refused) and "env:MQ_PW" in str(refused)


def test_an_unreachable_broker_is_still_retried(tmp_path, monkeypatch):
    calls = []

    def down(*args, **kwargs):
        calls.append(args)
        if len(calls) < 3:
            raise ConnectionRefusedError(111, "Connection refused")
    monkeypatch.setattr(celery_app, "send_action", down)
    monkeypatch.setattr(dispatch.time, "sleep", lambda s: None)
    dispatcher(tmp_path, monkeypatch)._send("boston", "a1", {})
    assert len(calls) == 3
    assert celery_app.login_refused(WorkersConfig(broker="amqp://x@h//"), ConnectionRefusedError()) is None
