"""The words `agent status` shows of each connector's actions are advertised (agent.capabilities entry points,
connectors/capabilities.py) so status needs no connector import; they must equal what the classes declare, and
a connector whose advertisement disagrees is refused when it loads."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agent.errors import ConfigError
from agent.registry import Registry, StatusWords, _check_advertised, advertised_words
from connectors.capabilities import status_words
from connectors.types import ActionSpec

BUILT_IN = ("ssh_linux", "winrm_windows", "active_directory", "firewall")


@pytest.mark.parametrize("name", BUILT_IN)
def test_advertisement_equals_the_class(name: str) -> None:
    registry = Registry()
    advertised = advertised_words(name)
    assert advertised is not None, f"{name}: no agent.capabilities entry point (reinstall: pip install -e .)"
    assert {a: dict(w) for a, w in advertised.items()} == status_words(registry.get(name).actions)


def test_words_from_the_advertisement_and_for_unknowns() -> None:
    registry = Registry()
    assert registry.words("firewall", "unblock_ip") == StatusWords(lifts="block_ip")
    assert registry.words("ssh_linux", "isolate") == StatusWords(active_as="isolated")
    assert registry.words("active_directory", "reset_password").undo_description.startswith("cannot be undone")
    assert registry.words("ssh_linux", "capture_evidence") == StatusWords()
    assert registry.words("no_such_connector", "isolate") == StatusWords()  # an uninstalled plugin's rows


def test_a_stale_advertisement_is_refused_on_load() -> None:
    drifted = SimpleNamespace(inventory_section="devices", host_os=(), actions={
        "block_ip": ActionSpec("block_ip", "d", "device", active_as="dropped"),
        "unblock_ip": ActionSpec("unblock_ip", "d", "device", lifts="block_ip")})
    with pytest.raises(ConfigError, match="agent.capabilities entry point advertises"):
        _check_advertised("firewall", drifted)
