"""Schemathesis against the daemon's own OpenAPI schema: no generated request makes the server fail, and every
answer matches what the schema documents (status codes, content types, bodies)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent.daemon import Daemon
from agent.intake.app import create_app
from tests.unit.daemon_env import API_TOKEN, TOKEN, configure, fake_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    cfg, _ = configure(Path(tmp_path_factory.mktemp("schema")))
    app = fake_app(cfg)
    daemon = Daemon(app)
    daemon.start()
    try:
        yield schemathesis.openapi.from_asgi("/openapi.json", create_app(daemon.service))
    finally:
        daemon.shutdown()
        app.close()


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_api_conforms(api_schema: Any) -> None:
    """Generated requests (authenticated where the operation needs it) never get a 5xx or an undocumented answer.

    Driven through hypothesis directly (``operation.as_strategy()``): schemathesis' pytest plugin does not run
    under the pytest version this project uses.
    """
    operations = _operations(api_schema)
    assert {op.path for op in operations} >= {"/alerts/{source}", "/approvals", "/incidents/{incident_id}",
                                              "/approvals/{approval_id}/approve", "/healthz"}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            if case.path.startswith("/alerts/"):
                case.path_parameters = {"source": "gen"}  # reach the normaliser, not only the 404
                headers = {"Authorization": f"Bearer {TOKEN}"}
            else:
                headers = {"Authorization": f"Bearer {API_TOKEN}"}
            case.call_and_validate(headers=headers, checks=CHECKS)
        run()
