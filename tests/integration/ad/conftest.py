"""Fixtures for the Active Directory connector tests: one real Samba AD DC for the whole session.

``samba_dc``      session-scoped :class:`agent.lab.samba.SambaDC` in namespace ``adtN-dc`` (10.79.N.50), reached
                  from a client namespace ``adtN-cl`` (10.79.N.10) through a veth pair; template-copy provisioning
                  under ``var/test-cache/samba`` makes the start ≈ 3 s after the first run.
``in_client_ns``  autouse: each test's thread acts from the client namespace (sockets it opens live there).
``dc_target``     the directory as the inventory would describe it; ``agent_creds`` the agent's bind account
                  (``ir-agent``, a Domain Admin, as in a real deployment with a delegated account).
``make_user``     factory for fresh users with unique names, so tests never share state.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from agent.lab import netns
from agent.lab.samba import SambaDC
from connectors.active_directory import ActiveDirectoryConnector
from connectors.types import Credentials, Secret, Target
from tests.slots import claim

from .helpers import AGENT_PASSWORD, DCEnv, private_dc, target_for


@contextlib.contextmanager
def _claim(base: str) -> Iterator[int]:
    """An exclusive index 1..9 so parallel sessions get distinct namespaces and subnets."""
    with claim([f"{base}{i}" for i in range(1, 10)], "Samba test slots") as name:
        yield int(name[len(base):])


@pytest.fixture(scope="session")
def samba_env() -> Iterator[DCEnv]:
    """Provision (template copy), wire and start one DC; tear it down (processes, namespaces, state) at the end."""
    if os.geteuid() != 0:
        pytest.skip("the Samba DC tests need root (network and mount namespaces)")
    if shutil.which("samba", path=netns.SBIN_PATH) is None or shutil.which("samba-tool") is None:
        pytest.skip("samba is not installed: run scripts/install-system.sh")
    with _claim("adt") as index, private_dc(f"adt{index}", f"10.79.{index}") as env:
        yield env


@pytest.fixture(scope="session")
def samba_dc(samba_env: DCEnv) -> SambaDC:
    return samba_env.dc


@pytest.fixture(autouse=True)
def in_client_ns(request: pytest.FixtureRequest) -> Iterator[None]:
    """Run every test of this directory from the client namespace (skipped for pure unit-style tests)."""
    if "samba_env" not in request.fixturenames and "samba_dc" not in request.fixturenames:
        yield
        return
    env: DCEnv = request.getfixturevalue("samba_env")
    with netns.enter(env.client_ns):
        yield


@pytest.fixture
def dc_target(samba_dc: SambaDC) -> Target:
    return target_for(samba_dc)


@pytest.fixture
def agent_creds() -> Credentials:
    return Credentials(username="ir-agent@lab.test", password=Secret(AGENT_PASSWORD))


@pytest.fixture
def connector() -> Iterator[ActiveDirectoryConnector]:
    conn = ActiveDirectoryConnector()
    yield conn
    conn.close()


_counter = itertools.count(1)


@pytest.fixture
def make_user(samba_dc: SambaDC) -> Callable[..., tuple[str, str]]:
    """Create a fresh enabled user (unique name); returns ``(sAMAccountName, password)``."""
    def make(prefix: str = "u", **attrs: Any) -> tuple[str, str]:
        name = f"{prefix}{os.getpid() % 1000}x{next(_counter)}"
        password = f"Pw-{name}-9a!"
        samba_dc.create_user(name, password, **attrs)
        return name, password
    return make
