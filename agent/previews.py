"""Exact dry runs: the read-only resolve step for previews (docs/architecture.md, decision 1).

A device's rule order, existing objects and pending commits decide which lines a block sends (Junos ``insert …
before term``, FortiGate ``edit <id>`` / ``move``, MikroTik ``place-before=0``, IOS ACL creation), so a preview
computed without looking is a guess. For a dry run, after every input check and guard, each planned action whose
connector offers ``resolve(session, action, args)`` gets its target read (show commands only, never a write) and
its preview recomputed from those facts: the preview is then exactly what ``apply`` would send to the device as
it is now. ``--offline`` skips this and keeps the conditional offline preview; a target that cannot be read keeps
it too, and the plan says so.

A real run does the same read before it shows the plan it asks to confirm (``pin=True``, for connectors that
declare ``checks_planned_lines``), and pins the lines shown into the action's arguments (``planned_lines``): at
apply the connector re-reads the device and refuses that item, nothing sent, when the lines it would now send
differ — the device changed since the plan was shown (someone blocked the address meanwhile, the ACL changed).
Only an action that is the sole one on its target is pinned (a second action on the same device would
legitimately change it first).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.errors import AgentError
from connectors.errors import ConnectorError

if TYPE_CHECKING:
    from agent.plan import Plan, Planner

__all__ = ["exact_previews"]


def exact_previews(planner: Planner, plan: Plan, pin: bool = False) -> None:
    """Replace each resolvable action's preview by the exact lines for the target's current state; with ``pin``
    (a real run) only for connectors that check them at apply, and record them as ``planned_lines``."""
    per_target: dict[str, int] = {}
    for pa in plan.actions:
        per_target[pa.target.name] = per_target.get(pa.target.name, 0) + 1
    for pa in plan.actions:
        if pa.undo_of:
            continue
        conn: Any = planner.registry.get(pa.target.connector)
        resolve = getattr(conn, "resolve", None)
        if resolve is None or pa.entry.credentials is None:
            continue
        if pin and not (getattr(conn, "checks_planned_lines", False) and per_target[pa.target.name] == 1):
            continue
        try:
            creds = pa.entry.credentials.resolve()
            session = conn.open(pa.target, creds, planner.ctx)
            try:
                facts = resolve(session, pa.action, pa.args)
            finally:
                session.close()
            lines = conn.preview(pa.target, pa.action, pa.args, planner.ctx, facts=facts)
            if pin:
                pa.args["planned_lines"] = list(lines)
            pa.preview = lines
        except (ConnectorError, AgentError) as exc:
            plan.notes.append(f"{pa.target.name}: could not read the device for an exact preview ({exc}); "
                              "the lines shown are conditional")
            continue
        if not pa.preview:
            pa.preview = ["(nothing to send: the device already is in the requested state)"]
