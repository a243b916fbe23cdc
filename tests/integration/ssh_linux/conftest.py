"""Fixtures of the ssh_linux lab tests (the shared lab itself comes from tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.lab import Lab
from tests.integration.ssh_linux.helpers import Agent, stop_timers


@pytest.fixture
def agent(clean_lab: Lab) -> Iterator[Agent]:
    """The connector, with the whole test acting from mgmt (fresh connections are opened from the same place)."""
    stop_timers(clean_lab)
    with clean_lab.enter("mgmt"):
        yield Agent(clean_lab)
    stop_timers(clean_lab)
