"""A worker or a central whose broker password is wrong is told so at once, naming the field — not a 60-line
Celery traceback (worker) or a minute of retries (central).

Found starting ``agent worker`` as a stranger with a mistyped ``AGENT_BROKER_PASSWORD``: Celery printed
"Unrecoverable error: AccessRefused(403, …)" and its traceback, exit 1. RabbitMQ refuses a bad login with
connection.close 403 ACCESS_REFUSED (https://www.rabbitmq.com/docs/access-control, "Authentication failures");
retrying cannot fix a password, so nothing retries it. Real RabbitMQ and PostgreSQL on loopback.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cli.test_contain_cli import AGENT
from tests.integration.pg_server import private_postgres_server
from tests.integration.rabbit_server import Broker, private_rabbitmq

pytestmark = [pytest.mark.root]

WRONG = "Not-The-Pass-4711"


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, Broker]]:
    with private_postgres_server("login-pg-") as pg, private_rabbitmq() as mq:
        yield pg.url, mq


def config(tmp_path: Path, url: str, broker: Broker) -> Path:
    (tmp_path / "inventory.yaml").write_text(  # a site host at a loopback address: never contacted here
        "sites: {boston: {}}\nhosts:\n  web1: {address: 127.0.0.2, os: linux, connector: ssh_linux, site: boston,\n"
        "         credentials: {username: root, private_key: 'file:key'}}\n")
    (tmp_path / "key").write_text("not used\n")
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\ndatabase: \"{url}\"\naudit_dir: audit\nevidence_dir: evidence\n"
        f"workers:\n  broker: \"{broker.url.replace('guest:guest@', 'guest@')}\"\n"
        "  broker_password: env:AGENT_BROKER_PASSWORD\n  sites: [boston]\n")
    return tmp_path / "agent.yaml"


def test_worker_with_a_wrong_broker_password_says_so_at_once(servers: tuple[str, Broker], tmp_path: Path):
    url, broker = servers
    cfg = config(tmp_path, url, broker)
    env = {**os.environ, "AGENT_BROKER_PASSWORD": WRONG, "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
    started = time.monotonic()
    res = subprocess.run([AGENT, "worker", "--site", "boston", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=120, env=env, stdin=subprocess.DEVNULL, check=False)
    took = time.monotonic() - started
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert "workers.broker_password" in out and "refused the login" in out, out
    assert "Traceback" not in out and WRONG not in out
    assert took < 30, took

