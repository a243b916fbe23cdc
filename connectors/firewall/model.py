"""The vocabulary every firewall dialect shares: our object names, a configuration line with its undo, what a
device holds, what a change did, and a line the device refused.

Why a module of its own (STYLE #2): these are plain data that the base dialect, every vendor module and the
connector facade all speak; keeping them apart from :class:`~connectors.firewall.dialect.Dialect` (the rules for
*sending* lines) lets a vendor module read its vocabulary without the send machinery, and keeps each module to
one job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from connectors.firewall.addresses import Network

__all__ = [
    "GROUP",
    "NAME_RE",
    "PLACEHOLDER",
    "RULE",
    "ChangeReport",
    "DeviceError",
    "DeviceState",
    "Step",
]

GROUP = "IR-BLOCKLIST"     # the only group/list/set the agent fills
RULE = "IR-BLOCK"          # the only rule/term/policy it creates
PLACEHOLDER = "255.255.255.255"   # keeps object groups non-empty (ASA, FortiOS, PAN-OS refuse empty groups in use)
NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.:/-]{0,62}\Z", re.ASCII)


@dataclass(frozen=True)
class Step:
    """One configuration line and the self-contained lines that take it back out (empty: nothing to undo)."""

    line: str
    undo: tuple[str, ...] = ()
    barrier: bool = False   # send only after every earlier line was answered (never typed ahead)


@dataclass
class DeviceState:
    """What the device holds now: our group's members and whether the deny rule references it at the top."""

    members: list[Network] = field(default_factory=list)
    group_exists: bool = False
    rule_in_place: bool = False
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def scaffold(self) -> bool:
        return self.group_exists and self.rule_in_place


@dataclass
class ChangeReport:
    """Outcome of one block/unblock: what changed, what already was, and every line the device accepted."""

    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    applied_lines: list[str] = field(default_factory=list)
    persist_lines: list[str] = field(default_factory=list)
    session_lines: list[str] = field(default_factory=list)   # commands that ended established flows
    sessions_cleared: dict[str, int] = field(default_factory=dict)   # flows ended per address, where counted
    scaffold_created: bool = False
    warnings: list[str] = field(default_factory=list)


class DeviceError(Exception):
    """A line the device refused (internal; surfaces as :class:`Rejected`)."""

    def __init__(self, line: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message
