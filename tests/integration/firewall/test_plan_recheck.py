"""The real run re-reads the device and compares with the plan it showed (issue 17; docs/architecture.md decision 1,
step 4): a device that changed between the plan and the apply — another administrator blocked the address, the
ACL was edited — is refused for that action with a clear message and nothing is sent; an unchanged one gets
exactly the lines shown.

The planner, previews, engine and journal are the real ones (the same as `agent block-ip` without --dry-run);
the device is the IOS simulator driven by netmiko's real driver.
"""

from __future__ import annotations

from typing import Any

from agent.previews import exact_previews
from agent.runbook import find_runbook
from tests.integration.firewall.test_batch_journal import env  # noqa: F401 - the shared fixture

A, B = "45.77.1.2", "45.77.1.3"


def _plan(app: Any) -> Any:
    plan = app.planner().build(find_runbook(app.settings.runbooks, "block-ip"), [A, B], {})
    exact_previews(app.planner(), plan, pin=True)   # what `agent block-ip` does before it shows the plan
    return plan


def _execute(app: Any, plan: Any, incident: str) -> Any:
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="test", requested_by=app.actor, trigger="cli")
    return engine.execute(plan, incident)


def test_unchanged_device_gets_exactly_the_lines_shown(env: Any) -> None:  # noqa: F811
    app, sim = env
    plan = _plan(app)
    (pa,) = plan.actions
    assert pa.args["planned_lines"] == pa.preview and any(A in ln for ln in pa.preview)
    mark = len(sim.lines)
    result = _execute(app, plan, "INC-P1")
    assert result.status == "done", result.to_dict()
    sent = [ln.strip() for ln in sim.lines[mark:]]
    it = iter(sent)
    assert all(any(line.strip() == s for s in it) for line in pa.preview), (pa.preview, sent)


def test_address_blocked_by_someone_else_meanwhile_is_refused(env: Any) -> None:  # noqa: F811
    app, sim = env
    plan = _plan(app)
    # another administrator adds A to the group (and the scaffold) between the plan and the apply
    sim.state.groups["IR-BLOCKLIST"] = ["host 255.255.255.255", f"host {A}"]
    before = repr(sim.state.running())
    mark = len(sim.lines)
    result = _execute(app, plan, "INC-P2")
    (outcome,) = result.outcomes
    assert outcome.state == "failed", outcome.to_dict()
    assert "changed since the plan was shown" in (outcome.error or "") and A in (outcome.error or ""), outcome.error
    assert "run the command again" in (outcome.error or "")
    assert repr(sim.state.running()) == before and sim.saves == 0
    assert not [ln for ln in sim.lines[mark:] if ln.strip().startswith(("object-group", "ip access-list", "host"))]


def test_acl_edited_meanwhile_is_refused(env: Any) -> None:  # noqa: F811
    app, sim = env
    plan = _plan(app)
    sim.state.acls["OUTSIDE-IN"][1] = "permit ip host 192.0.2.9 any"   # someone took the reserved sequence 1
    result = _execute(app, plan, "INC-P3")
    (outcome,) = result.outcomes
    assert outcome.state == "failed" and sim.saves == 0, outcome.to_dict()
    assert "changed since the plan was shown" in (outcome.error or "") or "sequence 1" in (outcome.error or "")
