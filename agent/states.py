"""The journal's state names, apart from the mapped models so a module that needs only the words does not have to
import SQLAlchemy and the models for them (agent.store re-exports them).

intent -> snapshotted -> applying -> verifying -> done | failed | in_doubt   (undo rows follow the same path)
in_doubt: a change may have reached the target but is not verified; re-verified until known (agent.lifecycle)
"""

from __future__ import annotations

__all__ = ["ACTIVE_STATES", "ITEM_STATES", "TERMINAL_STATES"]

ACTIVE_STATES = ("intent", "snapshotted", "applying", "verifying")
TERMINAL_STATES = ("done", "failed", "skipped")
# Per item of an action (one account of a batched disable, one address of a block): intent until the action says
# otherwise; done = changed (or already so) and verified; failed = certainly not changed; in_doubt = may have been.
ITEM_STATES = ("intent", "done", "failed", "in_doubt", "skipped")
