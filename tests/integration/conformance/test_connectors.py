"""Every registered connector — shipped or installed from another distribution — against the one conformance
suite (tests/conformance/connector_suite.py), each with its cheapest real server or double (rigs.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.registry import Registry
from tests.conformance.connector_suite import CHECKS, Rig, check_capabilities
from tests.conformance.rigs import RIGS


def test_every_registered_connector_has_a_rig(registry: Registry) -> None:
    assert "toybox" in registry.names()  # the third-party plugin came in through its entry point
    missing = sorted(set(registry.names()) - set(RIGS))
    assert not missing, f"registered connectors without a conformance rig (tests/conformance/rigs.py): {missing}"


@pytest.mark.parametrize("name", sorted(RIGS))
def test_capabilities_match_methods(registry: Registry, name: str) -> None:
    check_capabilities(registry.get(name))


@pytest.fixture(params=sorted(RIGS))
def rig(request: pytest.FixtureRequest, registry: Registry, tmp_path: Path) -> Iterator[Rig]:
    yield from RIGS[request.param](request, registry, tmp_path)


@pytest.mark.parametrize("check", sorted(CHECKS))
def test_contract(rig: Rig, check: str) -> None:
    CHECKS[check](rig)
