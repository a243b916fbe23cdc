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
    the_app = _app(samba_dc, tmp_path)
    yield the_app
    the_app.close()


def _app(samba_dc: Any, tmp_path: Path, protected: str = "") -> App:
    (tmp_path / "pw").write_text(AGENT_PASSWORD)
    (tmp_path / "runbooks").mkdir()
    for book in ("disable-account.yaml", "enable-account.yaml"):
        shutil.copy(REPO / "agent" / "data" / "runbooks" / book, tmp_path / "runbooks" / book)
    dc = samba_dc
    (tmp_path / "inventory.yaml").write_text(
        "management:\n  addresses: [10.79.0.10]\n"
        f"directories:\n  lab-ad:\n    address: {dc.address}\n"
        f"    options: {{base_dn: '{dc.base_dn}', server_name: '{dc.server_name}', ca_file: '{dc.ca_file}', "
        f"port: 636{protected}}}\n"
        f"    credentials: {{username: ir-agent@lab.test, password: 'file:{tmp_path / 'pw'}'}}\n")
    (tmp_path / "agent.yaml").write_text(
        "inventory: inventory.yaml\nrunbooks: runbooks\ndatabase: agent.db\naudit_dir: audit\n"
        "evidence_dir: evidence\nengine: {retries: 1, backoff: 0.01}\n")
    return App(config_path=tmp_path / "agent.yaml", actor="tester@lab")


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


def test_a_name_resolving_to_a_protected_account_refuses_the_whole_command(samba_dc, make_user, tmp_path):
    """The inventory protects an account by DN; naming it by its UPN passes the by-name checks, but the resolve
    step finds the protected DN: the whole command is refused before anything is sent (the other account too)."""
    from agent.errors import GuardRefused
    vip, _ = make_user("vip")
    other, _ = make_user("idp")
    dn = f"CN={vip},CN=Users,{samba_dc.base_dn}"
    app = _app(samba_dc, tmp_path, protected=f", protected_accounts: ['{dn}']")
    try:
        with pytest.raises(GuardRefused, match="protected"):
            app.planner().build(find_runbook(app.settings.runbooks, "disable-account"), [other, f"{vip}@lab.test"])
        assert not uac(samba_dc, vip) & 2 and not uac(samba_dc, other) & 2
    finally:
        app.close()
