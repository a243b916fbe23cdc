"""What one action's run or resolution ends as: the records :class:`agent.lifecycle.ActionRunner` returns and the
error classes it sorts by. They live apart from the runner so that the engine, the workers, reconciliation and
the connector conformance suite can name an outcome (or the refusals that make "failed" honest after
``applying``) without importing the lifecycle machinery itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.errors import AuthError, HostKeyError, InvalidInput, Rejected, TLSError

__all__ = ["IN_DOUBT", "REFUSALS", "ActionOutcome", "Interrupted", "Resolution"]

IN_DOUBT = "in_doubt"
# The target answered "no" to the change itself: nothing was changed, so "failed" is the truth.
REFUSALS = (Rejected, AuthError, InvalidInput, HostKeyError, TLSError)


class Interrupted(Exception):
    """The run was cancelled (Ctrl-C); actions in flight stay journaled for reconciliation."""


@dataclass
class ActionOutcome:
    subject: str
    step: str
    target: str
    action: str
    kind: str
    state: str  # done | failed | in_doubt | skipped
    changed: bool = False
    summary: str = ""
    error: str | None = None
    error_kind: str | None = None
    warnings: list[str] = field(default_factory=list)
    action_id: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)  # a batch: each account/address and its state

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Resolution:
    """What :meth:`ActionRunner.resolve` did with one unfinished or in-doubt action."""

    action_id: str
    target: str
    action: str
    kind: str
    from_state: str
    outcome: str  # done | failed | in_doubt | pending (left for later: unreachable) | skipped (claimed elsewhere)
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)
