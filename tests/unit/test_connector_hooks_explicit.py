"""Connector hooks are real methods: a reader (or an IDE) can go from an action to the code that runs.

The AD connector used to build ``_apply_disable_account``-style hooks at attribute-lookup time
(``__getattr__``), so neither a reader nor mypy could follow them; now each is a one-line typed method.
"""

from __future__ import annotations

import inspect

from connectors.active_directory import ActiveDirectoryConnector


def test_ad_hooks_are_defined_methods() -> None:
    cls = ActiveDirectoryConnector
    assert "__getattr__" not in vars(cls)
    for action in cls.actions:
        apply = vars(cls).get(f"_apply_{action}")
        assert inspect.isfunction(apply), action
        assert inspect.signature(apply).return_annotation == "ActionResult", action
        assert callable(vars(cls).get(f"_verify_{action}")), action
    assert "_undo_reset_password" not in vars(cls)  # not reversible: no undo hook, as declared
