"""Fixtures for the connector conformance suite: the registry with a third-party plugin installed the way pip
would install it, and the shared fixtures of the connectors' own folders (each started once per session)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import registry as registry_module
from agent.registry import Registry
from tests.integration.ad.conftest import samba_env
from tests.integration.winrm.conftest import ntlm_users, pki

__all__ = ["ntlm_users", "pki", "registry", "samba_env"]

REPO = Path(__file__).resolve().parents[3]
PLUGIN = REPO / "tests" / "plugins" / "toybox_connector"


def _forget_entry_points() -> None:
    for cached in (registry_module._scan, registry_module.installed_points, registry_module.advertised_defaults):
        cached.cache_clear()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Every connector the ``agent.connectors`` entry points name, plus ``toybox`` from a distribution of its own
    (a ``.dist-info`` with ``entry_points.txt`` on ``sys.path``, as ``pip install toybox-connector`` leaves it)."""
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(PLUGIN, site / "toybox_connector")
    dist = site / "toybox_connector-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toybox-connector\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[agent.connectors]\ntoybox = toybox_connector:ToyboxConnector\n")
    sys.path.insert(0, str(site))
    _forget_entry_points()
    reg = Registry()
    try:
        yield reg
    finally:
        reg.close()
        sys.path.remove(str(site))
        sys.modules.pop("toybox_connector", None)
        _forget_entry_points()
