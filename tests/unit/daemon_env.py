"""A daemon on loopback over the in-memory fake connector (tests of intake, rules, approvals and scheduling).

The targets are :class:`tests.unit.fake_connector.FakeWorld` state; the daemon, its HTTP server, store, audit log,
dispatcher and scheduler are all real.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agent.app import App
from agent.daemon import Daemon
from agent.registry import Registry
from tests.unit.engine_env import make_env
from tests.unit.fake_connector import FakeConnector, FakeWorld

HMAC_SECRET = "wazuh-test-secret-0123456789"
TOKEN = "generic-test-token-abcdef"
API_TOKEN = "alice-api-token-xyz"

RULES = """\
rules:
  - name: wazuh-compromise
    match: {source: wazuh, rule_id: ["5712", "401*"], min_severity: 60}
    runbook: isolate-host
    params: {capture_evidence: false}
  - name: generic-auto
    match: {source: gen, rule_id: "edr-*"}
    runbook: isolate-host
    params: {capture_evidence: false}
{extra}
"""


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy (returned) or fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def sign(body: bytes, secret: str = HMAC_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def configure(tmp: Path, *, daemon: str = "", rules_extra: str = "", retries: int = 1) -> tuple[Path, FakeWorld]:
    """Write agent.yaml (with a daemon section), rules.yaml and an inventory under ``tmp``."""
    _, world = make_env(tmp, retries=retries)
    (tmp / "rules.yaml").write_text(RULES.replace("{extra}", rules_extra))
    os.environ["TEST_WAZUH_HMAC"] = HMAC_SECRET
    os.environ["TEST_GEN_TOKEN"] = TOKEN
    os.environ["TEST_API_ALICE"] = API_TOKEN
    text = (tmp / "agent.yaml").read_text() + (
        "rules: rules.yaml\n"
        "daemon:\n"
        "  listen: 127.0.0.1:0\n"
        "  max_body_bytes: 4096\n"
        "  shutdown_grace: 5s\n"
        "  sources:\n"
        "    wazuh: {format: wazuh, hmac_secret: env:TEST_WAZUH_HMAC, require_timestamp: false}\n"
        "    gen: {format: generic, token: env:TEST_GEN_TOKEN}\n"
        "    am: {format: alertmanager, token: env:TEST_GEN_TOKEN}\n"
        "  api_tokens: {alice: env:TEST_API_ALICE}\n" + daemon)
    (tmp / "agent.yaml").write_text(text)
    return tmp / "agent.yaml", world


def fake_app(cfg: Path) -> App:
    app = App(config_path=cfg, actor="agent-daemon@test")
    app.__dict__["registry"] = Registry(extra={"ssh_linux": FakeConnector})
    return app


@contextmanager
def running(cfg: Path) -> Iterator[Daemon]:
    app = fake_app(cfg)
    daemon = Daemon(app).start_in_thread()
    try:
        yield daemon
    finally:
        daemon.stop()
        app.close()


def wazuh_alert(host: str = "web1", rule_id: str = "5712", level: int = 10, **data: Any) -> dict[str, Any]:
    return {"timestamp": "2026-11-23T03:12:44.118+0000",
            "rule": {"level": level, "description": "sshd: authentication success after brute force",
                     "id": rule_id, "groups": ["syslog", "sshd", "authentication_success"]},
            "agent": {"id": "003", "name": host, "ip": "10.9.0.21"}, "manager": {"name": "wazuh-manager"},
            "id": "1795397564.1234567", "full_log": "Accepted password for alice from 10.9.1.130 port 51122 ssh2",
            "decoder": {"name": "sshd"}, "data": {"srcip": "10.9.1.130", "dstuser": "alice", **data},
            "location": "/var/log/auth.log"}
