"""Connector hooks are real methods in an explicit table: a reader (or an IDE) can go from an action to the code.

The AD connector used to build ``_apply_disable_account``-style hooks at attribute-lookup time
(``__getattr__``), so neither a reader nor mypy could follow them; now each is a one-line typed method. And
``ConnectorBase`` used to find every connector's hooks by building ``_apply_<action>`` names for ``getattr``; now
it dispatches only through the table each connector's ``hooks()`` returns.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from connectors import base
from connectors.active_directory import ActiveDirectoryConnector
from connectors.base import ActionHooks, ConnectorBase
from connectors.errors import InvalidInput
from connectors.firewall import FirewallConnector
from connectors.ssh_linux import SshLinuxConnector
from connectors.types import ActionResult, ActionSpec, Snapshot, Target
from connectors.winrm_windows import WinRMWindowsConnector


def test_ad_hooks_are_defined_methods() -> None:
    cls = ActiveDirectoryConnector
    assert "__getattr__" not in vars(cls)
    for action in cls.actions:
        apply = vars(cls).get(f"_apply_{action}")
        assert inspect.isfunction(apply), action
        assert inspect.signature(apply).return_annotation == "ActionResult", action
        assert callable(vars(cls).get(f"_verify_{action}")), action
    assert "_undo_reset_password" not in vars(cls)  # not reversible: no undo hook, as declared


class _NamedOnly(ConnectorBase):
    """A connector that relies on a method's name to be found: the base class no longer builds names."""

    name: ClassVar[str] = "named_only"
    actions: ClassVar[Mapping[str, ActionSpec]] = {"zap": ActionSpec("zap", "zap it", "host", reversible=False)}

    def _apply_zap(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return ActionResult(True, "zapped")


def test_the_base_dispatches_only_through_the_explicit_table() -> None:
    with pytest.raises(NotImplementedError, match="does not say which methods carry out its actions"):
        _NamedOnly().apply(object(), "zap", {}, Snapshot())
    source = inspect.getsource(base)
    assert "getattr(" not in source and "__getattr__" not in source


def test_a_declared_action_missing_from_the_table_is_named() -> None:
    class Partial(_NamedOnly):
        def hooks(self) -> Mapping[str, ActionHooks]:
            return {}
    with pytest.raises(InvalidInput, match="declares action 'zap' but has no hooks for it"):
        Partial().validate(Target("t", "host", "10.0.0.1", "named_only"), "zap", {})


def test_every_shipped_connector_table_matches_its_actions() -> None:
    for cls in (ActiveDirectoryConnector, FirewallConnector, SshLinuxConnector, WinRMWindowsConnector):
        table = cls.__new__(cls).hooks()
        assert set(table) == set(cls.actions), cls.name
