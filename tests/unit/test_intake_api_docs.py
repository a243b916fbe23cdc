"""The daemon's API describes itself without the internet: OpenAPI security schemes (sources vs people) and
per-source example bodies; ``/docs`` is plain HTML with no script from a CDN; ``/healthz`` shows queue depth."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.unit.daemon_env import configure, running


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    cfg, _ = configure(tmp_path)
    with running(cfg) as daemon, httpx.Client(base_url=daemon.url, timeout=10) as c:
        yield c


def test_openapi_security_and_examples(client: httpx.Client) -> None:
    schema: dict[str, Any] = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {"sourceHmac", "sourceToken", "sourceUrlToken", "apiToken"} <= set(schemes)
    post = schema["paths"]["/alerts/{source}"]["post"]
    assert {k for req in post["security"] for k in req} == {"sourceHmac", "sourceToken", "sourceUrlToken"}
    assert {"wazuh", "elastic", "splunk", "alertmanager", "generic"} <= set(
        post["requestBody"]["content"]["application/json"]["examples"])
    assert "application/x-ndjson" in post["requestBody"]["content"]
    assert schema["paths"]["/approvals"]["get"]["security"] == [{"apiToken": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_docs_page_loads_nothing_from_elsewhere(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and not re.search(r"(src|href)=['\"]https?://", page.text)
    assert "/alerts/{source}" in page.text and "sourceHmac" in page.text


def test_healthz_reports_queue_depth(client: httpx.Client) -> None:
    health = client.get("/healthz").json()
    assert health["queue"] == {"decisions": 0, "writes": 0}
