"""Per-item bookkeeping: canonical keys, connector results read per item, undo of some items of a batch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
from sqlalchemy import select

from agent import items
from agent.intake.dispatcher import wanted_slots
from agent.items import PlannedItem, account_key, address_key, guid_key, item_rows, slice_for_undo
from agent.journal import Journal
from agent.registry import Registry
from agent.store import Action, ActionItem, Store
from connectors.base import ActionHooks, ConnectorBase
from connectors.types import ActionSpec


class _NoAudit:
    def record(self, event: str, **fields):
        return {}


@pytest.mark.parametrize("a,b", [("203.0.113.7", "203.0.113.7/32"), ("2001:db8::1", "2001:DB8:0::1/128"),
                                 ("10.1.2.3/24", "10.1.2.0/24")])
def test_address_spellings_are_one_key(a, b):
    assert address_key(a) == address_key(b)


def test_account_keys():
    assert account_key("JDoe") == account_key("jdoe")
    assert guid_key("{8F3A-AB}") == guid_key("8f3a-ab")


def _journal(tmp_path: Path) -> tuple[Store, Journal]:
    store = Store(f"sqlite:///{tmp_path / 'j.db'}")
    journal = Journal(store, _NoAudit())
    journal.open_incident("INC-1", title="t", reason="", requested_by="", trigger="cli")
    return store, journal


def _ad_batch(journal: Journal, names: list[str]) -> Action:
    row = Action(incident_id="INC-1", runbook="disable-account", step="disable", target="dc", subject="x",
                 target_kind="account", connector="active_directory", action="disable_account",
                 args={"accounts": names}, state="intent")
    row.items = item_rows([PlannedItem("account", account_key(n), n, n) for n in names])
    return journal.create(row)


# The dicts below are the shapes connectors/active_directory/batch.py documents and returns
# (snapshot_batch: {"accounts": [{requested, status, account, userAccountControl}]}; apply_batch details
# {"accounts": [{requested, outcome, ...}]}).
def _identity(n: int) -> dict:
    return {"dn": f"CN=u{n},CN=Users,DC=lab,DC=test", "objectGUID": f"0000000{n}-aaaa-bbbb-cccc-dddddddddddd"}


def test_ad_batch_results_are_journaled_per_account(tmp_path: Path):
    """Found accounts get their GUID as canonical id; a name that finds nothing is failed (named, not changed);
    an account already disabled is done but unchanged (undo must leave it); the rest changed."""
    store, journal = _journal(tmp_path)
    row = _ad_batch(journal, ["u1", "ghost", "u3"])
    snap = {"accounts": [{"requested": "u1", "status": "ok", "account": _identity(1), "userAccountControl": 512},
                         {"requested": "ghost", "status": "not_found", "error": "no account named 'ghost'"},
                         {"requested": "u3", "status": "ok", "account": _identity(3), "userAccountControl": 514}]}
    journal.transition(row, "snapshotted", snapshot=snap)
    journal.transition(row, "applying")
    result = {"changed": True, "summary": "disabled 1 of 3", "details": {"accounts": [
        {"requested": "u1", "outcome": "disabled"}, {"requested": "ghost", "outcome": "not_found"},
        {"requested": "u3", "outcome": "already_disabled"}]}}
    journal.transition(row, "verifying", result=result, changed=1)
    journal.transition(row, "done", verification={"in_effect": True, "summary": "ok", "observed": {"enabled": []}})
    got = [(i.requested, i.canonical, i.state, i.outcome, i.changed) for i in journal.items_of(row.id)]
    assert got == [("u1", guid_key(_identity(1)["objectGUID"]), "done", "disabled", 1),
                   ("ghost", "name:ghost", "failed", "not_found", 0),
                   ("u3", guid_key(_identity(3)["objectGUID"]), "done", "already_disabled", 0)]
    store.close()


def test_batch_broken_after_sending_leaves_open_items_in_doubt(tmp_path: Path):
    """The connection drops while the modifies are on the wire: nothing is known about them — in doubt."""
    store, journal = _journal(tmp_path)
    row = _ad_batch(journal, ["u1", "u2"])
    journal.transition(row, "snapshotted", snapshot={"accounts": [
        {"requested": "u1", "status": "ok", "account": _identity(1), "userAccountControl": 512},
        {"requested": "u2", "status": "ok", "account": _identity(2), "userAccountControl": 512}]})
    journal.transition(row, "applying")
    journal.transition(row, "failed", error="connection reset")
    assert [i.state for i in journal.items_of(row.id)] == ["in_doubt", "in_doubt"]
    store.close()


def test_undo_of_some_items_slices_args_and_snapshot(tmp_path: Path):
    """`enable-account u3` after disabling u1 u2 u3 in one action restores u3 alone, from u3's snapshot."""
    store, journal = _journal(tmp_path)
    row = _ad_batch(journal, ["u1", "u2", "u3"])
    entries = [{"requested": f"u{n}", "status": "ok", "account": _identity(n), "userAccountControl": 512}
               for n in (1, 2, 3)]
    journal.transition(row, "snapshotted", snapshot={"accounts": entries})
    with store.session() as s:
        db = s.get(Action, row.id)
        chosen = [i for i in db.items if i.requested == "u3"]
        args, snap = slice_for_undo(db, chosen)
    assert args == {"accounts": ["u3"]} and snap == {"accounts": [entries[2]]}
    store.close()


def test_undone_per_item_keeps_the_action_active_for_the_rest(tmp_path: Path):
    store, journal = _journal(tmp_path)
    row = _ad_batch(journal, ["u1", "u2"])
    for state in ("snapshotted", "applying"):
        journal.transition(row, state)
    journal.transition(row, "verifying", result={"changed": True, "details": {"accounts": [
        {"requested": "u1", "outcome": "disabled"}, {"requested": "u2", "outcome": "disabled"}]}}, changed=1)
    journal.transition(row, "done", verification={"in_effect": True, "observed": {}})
    undo = Action(incident_id="INC-1", runbook="enable-account", step="enable", target="dc", subject="u2",
                  connector="active_directory", action="disable_account", kind="undo", undo_of=row.id,
                  args={"accounts": ["u2"]}, state="intent")
    undo.items = item_rows([PlannedItem("account", "name:u2", "u2", "u2")])
    journal.create(undo)
    for state in ("applying",):
        journal.transition(undo, state)
    journal.transition(undo, "verifying", result={"changed": True, "details": {"accounts": [
        {"requested": "u2", "outcome": "restored"}]}}, changed=1)
    journal.transition(undo, "done", verification={"in_effect": False, "observed": {}})
    journal.mark_undone(row.id, undo.id)
    with store.session() as s:
        assert s.get(Action, row.id).undone_at is None
        undone = {i.requested: i.undone_at is not None for i in s.scalars(
            select(ActionItem).where(ActionItem.action_id == row.id))}
    assert undone == {"u1": False, "u2": True}
    store.close()


def test_blast_radius_counts_every_account_of_a_batch():
    """A batched disable of three accounts takes three account slots, not one."""
    pa = SimpleNamespace(action="disable_account", undo_of=None, spec=SimpleNamespace(mutating=True, blast="accounts"),
                         args={"accounts": ["a", "B", "c"]}, subject="a, B, c", target=SimpleNamespace(name="dc"),
                         items=[PlannedItem("account", account_key(n), n, n) for n in ("a", "B", "c")])
    assert wanted_slots(SimpleNamespace(actions=[pa])) == {"accounts": {"name:a", "name:b", "name:c"}}


class _AcmeFirewall(ConnectorBase):
    """A device connector from another distribution: it declares where its per-item data is, nothing else."""

    name: ClassVar[str] = "acme_fw"
    inventory_section: ClassVar[str] = "devices"
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "block_ip": ActionSpec("block_ip", "block", "device", batch="addresses", items_before="there_before",
                               items_absent="not_there")}

    def open(self, target: object, creds: object, ctx: object) -> object:
        raise AssertionError("the journal never connects")

    def hooks(self) -> Mapping[str, ActionHooks]:
        return {}


@pytest.mark.parametrize("absent", [[], ["203.0.113.7"]], ids=["read-back-ok", "one-missing"])
def test_a_third_party_batch_is_journaled_per_item_from_its_declarations(tmp_path: Path, monkeypatch, absent):
    """Nothing in agent/items.py knows acme_fw: the snapshot key, the result's outcome lists and the read-back key
    it declares decide each address's snapshot, outcome, changed flag and state."""
    monkeypatch.setattr(items, "_registry", lambda: Registry(extra={"acme_fw": _AcmeFirewall}))
    store, journal = _journal(tmp_path)
    addresses = ["203.0.113.7", "198.51.100.0/24"]
    row = Action(incident_id="INC-1", runbook="block-ip", step="block", target="edge", subject="x",
                 target_kind="device", connector="acme_fw", action="block_ip", args={"addresses": addresses},
                 state="intent")
    row.items = item_rows([PlannedItem("address", address_key(a), a, a) for a in addresses])
    journal.create(row)
    journal.transition(row, "snapshotted", snapshot={"there_before": ["198.51.100.0/24"]})
    journal.transition(row, "applying")
    journal.transition(row, "verifying", changed=1, result={"changed": True, "details": {
        "added": ["203.0.113.7/32"], "already_blocked": ["198.51.100.0/24"]}})
    journal.transition(row, "done", verification={"in_effect": not absent, "observed": {"not_there": absent}})
    got = [(i.requested, i.snapshot, i.outcome, i.changed, i.state) for i in journal.items_of(row.id)]
    assert got == [("203.0.113.7", {"there_before": False}, "added", 1, "failed" if absent else "done"),
                   ("198.51.100.0/24", {"there_before": True}, "already_blocked", 0, "done")]
    store.close()
