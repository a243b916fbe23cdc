"""The automation brake: ``agent automation pause`` turns every ``auto`` rule into ``approve`` at once.

Why: a rule that misfires (a detection gone noisy, a bad parser) isolates hosts until someone notices. Pausing
must be one command that works for every daemon on the database, takes effect at the next decision, and is
audited with who and why. While paused, a plan that would have run automatically becomes an approval request
saying so; nothing already running is interrupted, and ``agent release --by-rule R --since T`` undoes what one
rule did. ``resume`` restores the rules' own policies (a paused-time approval request stays a request).

The switch lives in ``intake_settings`` (key ``automation``); the dispatcher reads it once per decision that would
act automatically (a primary-key lookup), so there is no cache to go stale between daemons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from agent.intake.tables import IntakeSetting, create_tables
from agent.store import utcnow

__all__ = ["AutomationState", "automation_state", "set_automation"]

KEY = "automation"


@dataclass(frozen=True)
class AutomationState:
    paused: bool
    changed_by: str = ""
    changed_at: datetime | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"paused": self.paused, "changed_by": self.changed_by, "reason": self.reason,
                "changed_at": self.changed_at.isoformat() if self.changed_at else None}


def automation_state(store: Any) -> AutomationState:
    with store.session() as s:
        row = s.scalar(select(IntakeSetting).where(IntakeSetting.key == KEY))
        if row is None:
            return AutomationState(False)
        return AutomationState(row.value == "paused", row.changed_by, row.changed_at, row.reason)


def set_automation(store: Any, audit: Any, *, paused: bool, by: str, reason: str = "") -> AutomationState:
    """Pause or resume automation for every daemon on ``store``; audited (``automation.paused|resumed``)."""
    create_tables(store.engine)
    now = utcnow()
    with store.session() as s:
        row = s.get(IntakeSetting, KEY)
        before = row is not None and row.value == "paused"
        if row is None:
            row = IntakeSetting(key=KEY, value="running")
            s.add(row)
        row.value, row.changed_by, row.changed_at, row.reason = (
            "paused" if paused else "running", by[:200], now, reason[:2000])
    audit.record("automation.paused" if paused else "automation.resumed", by=by, reason=reason,
                 was_paused=before, detail="every auto rule asks for approval" if paused
                 else "rules run under their own policy again")
    return AutomationState(paused, by, now, reason)
