"""What the built-in connectors declare about their actions for ``agent status``, readable without importing them.

Why a copy: ``agent status`` names each active containment the way its connector declares it (``ActionSpec``:
"isolated", "blocked"), leaves out actions that *lift* another (``unblock_ip`` lifts ``block_ip``) and explains an
irreversible one with its undo description. Reading that from the classes imports the connector packages (≈ 0.1 s
for a host and a firewall; the directory connector also imports ldap3) — a third of the cold-status budget (issue
21: ≤ 0.25 s). So each distribution advertises these words through the ``agent.capabilities`` entry points (as it
advertises its inventory sections through ``agent.inventory``), and the registry checks, whenever it loads a
connector, that the advertisement equals :func:`status_words` of the class (tests/unit/test_capabilities.py does
too). A connector that advertises nothing is loaded and read instead: slower, same answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.types import ActionSpec

__all__ = ["ACTIVE_DIRECTORY", "FIREWALL", "SSH_LINUX", "WINRM_WINDOWS", "status_words"]

Words = dict[str, dict[str, str]]


def status_words(actions: Mapping[str, ActionSpec]) -> Words:
    """The part of a connector's declarations that ``agent status`` reads: per action its ``active_as`` and
    ``lifts`` when set, and the ``undo_description`` of an irreversible change (shown beside "permanent")."""
    out: Words = {}
    for name, spec in actions.items():
        words = {"active_as": spec.active_as, "lifts": spec.lifts,
                 "undo_description": spec.undo_description if spec.mutating and not spec.reversible else ""}
        words = {key: value for key, value in words.items() if value}
        if words:
            out[name] = words
    return out


SSH_LINUX: Words = {"isolate": {"active_as": "isolated"}}
WINRM_WINDOWS: Words = {"isolate": {"active_as": "isolated"}}
ACTIVE_DIRECTORY: Words = {
    "disable_account": {"active_as": "disabled"},
    "remove_privileged_groups": {"active_as": "out of privileged groups"},
    "reset_password": {"undo_description": "cannot be undone; an administrator must set a new password"},
    "expire_sessions": {"active_as": "no logon hours"},
}
FIREWALL: Words = {"block_ip": {"active_as": "blocked"}, "unblock_ip": {"lifts": "block_ip"}}
