"""Accounts are one subject whatever their spelling: the planner asks the real Samba DC for each name's
objectGUID before the plan is shown, and the journal matches undo by it."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.app import App
from agent.runbook import find_runbook

from .helpers import AGENT_PASSWORD, uac

pytestmark = [pytest.mark.samba, pytest.mark.root]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def app(samba_dc: Any, tmp_path: Path) -> Iterator[App]:
    (tmp_path / "pw").write_text(AGENT_PASSWORD)
    (tmp_path / "runbooks").mkdir()
    for book in ("disable-account.yaml", "enable-account.yaml"):
        shutil.copy(REPO / "agent" / "data" / "runbooks" / book, tmp_path / "runbooks" / book)
    dc = samba_dc
    (tmp_path / "inventory.yaml").write_text(
        "management:\n  addresses: [10.79.0.10]\n"
        f"directories:\n  lab-ad:\n    address: {dc.address}\n"
        f"    options: {{base_dn: '{dc.base_dn}', server_name: '{dc.server_name}', ca_file: '{dc.ca_file}', "
        "port: 636}\n"
        f"    credentials: {{username: ir-agent@lab.test, password: 'file:{tmp_path / 'pw'}'}}\n")
    (tmp_path / "agent.yaml").write_text(
        "inventory: inventory.yaml\nrunbooks: runbooks\ndatabase: agent.db\naudit_dir: audit\n"
        "evidence_dir: evidence\nengine: {retries: 1, backoff: 0.01}\n")
    the_app = App(config_path=tmp_path / "agent.yaml", actor="tester@lab")
    yield the_app
    the_app.close()


def run(app: App, book: str, names: list[str], incident: str = "INC-ID") -> Any:
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), names, {})
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="t", requested_by=app.actor, trigger="cli")
    return plan, engine.execute(plan, incident)


@pytest.mark.parametrize("spelling", ["upper", "upn", "netbios", "dn"])
def test_enable_by_another_spelling_undoes_the_disable(app, samba_dc, make_user, spelling):
    """`disable-account u` then `enable-account` with U, u@lab.test, LAB\\u or its DN restores the account
    (before: "Nothing to do." and the account stayed disabled)."""
    name, _pw = make_user("idn")
    other = {"upper": name.upper(), "upn": f"{name}@lab.test", "netbios": f"LAB\\{name}",
             "dn": f"CN={name},CN=Users,{samba_dc.base_dn}"}[spelling]
    _, result = run(app, "disable-account", [name])
    assert result.status == "done", result.to_dict()
    assert uac(samba_dc, name) & 2
    plan, result = run(app, "enable-account", [other])
    assert "disable_account" in [pa.action for pa in plan.actions if pa.undo_of], plan.notes
    assert result.status == "done", result.to_dict()
    assert not uac(samba_dc, name) & 2


def test_journaled_by_guid_and_one_account_named_twice_is_one_item(app, samba_dc, make_user):
    """A batch naming the same account as `a` and `A@lab.test` changes it once; the item's id is its GUID."""
    a, _ = make_user("idb")
    b, _ = make_user("idb")
    plan, result = run(app, "disable-account", [a, f"{a.upper()}@lab.test", b])
    batch = [pa for pa in plan.actions if pa.action == "disable_account"]
    assert len(batch) == 1 and [i.requested for i in batch[0].items] == [a, b], plan.notes
    assert all(i.canonical.startswith("guid:") for i in batch[0].items)
    assert any("name the same account" in n for n in plan.notes)
    assert result.status == "done", result.to_dict()
    _, result = run(app, "enable-account", [b.upper()])
    assert result.status == "done" and not uac(samba_dc, b) & 2 and uac(samba_dc, a) & 2
