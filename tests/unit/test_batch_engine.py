"""Batched account actions through the real planner, engine and journal, against a stateful fake directory.

The fake answers in the shapes connectors/active_directory/batch.py documents (snapshot ``accounts`` entries
with ``status``, per-account ``outcome`` in the result details, ``identify`` by objectGUID), so what is tested
here is the agent's side: one action per directory, per-item journal, per-item undo, rollback of one item.
The connector itself is tested against the real Samba DC (tests/integration/ad).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from agent.app import App
from agent.registry import Registry
from agent.runbook import find_runbook
from agent.store import Action, ActionItem, Incident
from connectors.base import ActionHooks, ConnectorBase
from connectors.errors import Rejected
from connectors.types import ActionResult, ActionSpec, Snapshot, Verification

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Directory:
    disabled: dict[str, bool] = field(default_factory=dict)  # sAMAccountName (lower) -> disabled
    groups: dict[str, list[str]] = field(default_factory=dict)
    guids: dict[str, str] = field(default_factory=dict)
    fail_groups: set[str] = field(default_factory=set)
    opens: int = 0
    sessions: int = 0

    def add(self, name: str) -> None:
        self.disabled[name.lower()] = False
        self.groups[name.lower()] = ["IT-Admins"]
        self.guids[name.lower()] = str(uuid.uuid4())

    def find(self, value: str) -> str | None:
        """sAMAccountName case-insensitively, or the UPN name@lab.test (as AD matches them)."""
        key = value.lower().removesuffix("@lab.test")
        return key if key in self.disabled else None


class _S:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeDirectory(ConnectorBase):
    name: ClassVar[str] = "active_directory"
    d: ClassVar[Directory] = Directory()
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "capture_evidence": ActionSpec("capture_evidence", "read", "account", mutating=False),
        "disable_account": ActionSpec("disable_account", "disable", "account", batch="accounts"),
        "remove_privileged_groups": ActionSpec("remove_privileged_groups", "groups", "account"),
        "reset_password": ActionSpec("reset_password", "reset", "account", reversible=False),
        "expire_sessions": ActionSpec("expire_sessions", "hours", "account"),
    }

    def open(self, target, creds, ctx):
        self.d.opens += 1
        return _S()

    def identify(self, session, names):
        return [{"objectGUID": self.d.guids[k]} if (k := self.d.find(n)) else None for n in names]

    def validate(self, target, action, args):
        super().validate(target, action, args)
        if "account" in args and "accounts" in args:  # as the real one refuses it (connector.py, _check)
            from connectors.errors import InvalidInput
            raise InvalidInput("give either 'account' or 'accounts', not both")

    def hooks(self) -> Mapping[str, ActionHooks]:
        def preview(*a: Any) -> list[str]:
            return ["fake"]
        return {
            "disable_account": ActionHooks(self._apply_disable_account, self._verify_disable_account, preview,
                                           self._snapshot_disable_account, self._undo_disable_account),
            "remove_privileged_groups": ActionHooks(
                self._apply_remove_privileged_groups, self._verify_remove_privileged_groups, preview,
                self._snapshot_remove_privileged_groups, self._undo_remove_privileged_groups),
            "reset_password": ActionHooks(self._apply_reset_password, self._verify_reset_password, preview,
                                          self._snapshot_reset_password),
            "expire_sessions": ActionHooks(self._apply_expire_sessions, self._verify_expire_sessions, preview,
                                           self._snapshot_expire_sessions, self._undo_expire_sessions),
            "capture_evidence": ActionHooks(self._apply_capture_evidence, preview=preview),
        }

    # disable_account: one account or a batch, per-account outcomes as batch.py reports them
    def _names(self, args):
        return list(args["accounts"]) if "accounts" in args else [args["account"]]

    def _snapshot_disable_account(self, s, args):
        entries = []
        for n in self._names(args):
            k = self.d.find(n)
            entries.append({"requested": n, "status": "ok", "account": {"objectGUID": self.d.guids[k]},
                            "userAccountControl": 514 if self.d.disabled[k] else 512} if k else
                           {"requested": n, "status": "not_found", "error": f"no account named {n!r}"})
        if "accounts" not in args:
            if entries[0]["status"] != "ok":
                raise Rejected(entries[0]["error"])
            return Snapshot({"account": entries[0]["account"], "userAccountControl": entries[0]["userAccountControl"]})
        return Snapshot({"accounts": entries})

    def _apply_disable_account(self, s, args, snap):
        entries = snap.data.get("accounts") or [{"requested": args["account"], "status": "ok",
                                                 "userAccountControl": snap.data["userAccountControl"]}]
        out = []
        for e in entries:
            if e["status"] != "ok":
                out.append({"requested": e["requested"], "outcome": e["status"], "error": e["error"]})
                continue
            k = self.d.find(e["requested"])
            was = self.d.disabled[k]
            self.d.disabled[k] = True
            out.append({"requested": e["requested"], "outcome": "already_disabled" if was else "disabled"})
        changed = any(o["outcome"] == "disabled" for o in out)
        return ActionResult(changed, "disabled", {"accounts": out} if "accounts" in args else {})

    def _verify_disable_account(self, s, args):
        enabled = [{"requested": n} for n in self._names(args) if (k := self.d.find(n)) and not self.d.disabled[k]]
        return Verification(not enabled, "checked", {"enabled": enabled})

    def _undo_disable_account(self, s, args, snap):
        entries = snap.data.get("accounts") or [{"requested": args["account"], "status": "ok",
                                                 "userAccountControl": snap.data["userAccountControl"]}]
        out = []
        for e in entries:
            if e["status"] != "ok":
                continue
            k = self.d.find(e["requested"])
            if e["userAccountControl"] & 2:
                out.append({"requested": e["requested"], "outcome": "left_disabled"})
                continue
            self.d.disabled[k] = False
            out.append({"requested": e["requested"], "outcome": "restored"})
        return ActionResult(True, "restored", {"accounts": out} if "accounts" in args else {})

    def _snapshot_remove_privileged_groups(self, s, args):
        return Snapshot({"groups": list(self.d.groups[self.d.find(args["account"]) or ""])})

    def already_so(self, action, snapshot):  # as the real connector answers (connector.py, already_so)
        return not snapshot.data["groups"] if action == "remove_privileged_groups" else None

    def _apply_remove_privileged_groups(self, s, args, snap):
        if args["account"].lower() in self.d.fail_groups:
            raise Rejected("insufficient access rights on IT-Admins")
        self.d.groups[self.d.find(args["account"]) or ""] = []
        return ActionResult(True, "removed")

    def _verify_remove_privileged_groups(self, s, args):
        return Verification(not self.d.groups[self.d.find(args["account"]) or ""], "groups")

    def _undo_remove_privileged_groups(self, s, args, snap):
        self.d.groups[self.d.find(args["account"]) or ""] = list(snap.data["groups"])
        return ActionResult(True, "re-added")

    def _snapshot_expire_sessions(self, s, args):
        return Snapshot({})

    def _apply_expire_sessions(self, s, args, snap):
        return ActionResult(False, "hours")

    def _verify_expire_sessions(self, s, args):
        return Verification(True, "hours")

    def _undo_expire_sessions(self, s, args, snap):
        return ActionResult(False, "hours")

    def _snapshot_reset_password(self, s, args):
        return Snapshot({"account": {"objectGUID": self.d.guids[self.d.find(args["account"]) or ""]}})

    def _apply_reset_password(self, s, args, snap):
        return ActionResult(True, "password set")

    def _verify_reset_password(self, s, args):
        return Verification(True, "set")

    def _apply_capture_evidence(self, s, args, snap):
        return ActionResult(False, "evidence", {})


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NOPE_PW", "x")
    (tmp_path / "runbooks").mkdir()
    for name in ("disable-account.yaml", "enable-account.yaml"):
        shutil.copy(REPO / "runbooks" / name, tmp_path / "runbooks" / name)
    (tmp_path / "inventory.yaml").write_text(
        "management:\n  addresses: [10.9.0.10]\nprotected:\n  accounts: [Administrator]\n"
        "directories:\n  corp:\n    address: 10.9.0.5\n"
        "    credentials: {username: ir-agent, password: 'env:NOPE_PW'}\n")
    (tmp_path / "agent.yaml").write_text(
        "inventory: inventory.yaml\nrunbooks: runbooks\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        "evidence_dir: var/evidence\nengine: {retries: 1, backoff: 0.01}\n")
    FakeDirectory.d = Directory()
    for name in ("alice", "bob", "carol"):
        FakeDirectory.d.add(name)
    app = App(config_path=tmp_path / "agent.yaml", actor="tester@lab")
    app.__dict__["registry"] = Registry(extra={"active_directory": FakeDirectory})
    yield app, FakeDirectory.d
    app.close()


def run(app: App, book: str, names: list[str], incident: str = "INC-A", **params: Any):
    plan = app.planner().build(find_runbook(app.settings.runbooks, book), names, params)
    engine = app.engine()
    engine.journal.open_incident(incident, title="t", reason="t", requested_by=app.actor, trigger="cli")
    return plan, engine.execute(plan, incident)


def test_one_disable_action_per_directory_with_an_item_per_account(env):
    app, d = env
    plan, result = run(app, "disable-account", ["alice", "Bob", "carol@lab.test"])
    disables = [pa for pa in plan.actions if pa.action == "disable_account"]
    assert len(disables) == 1 and disables[0].args["accounts"] == ["alice", "Bob", "carol@lab.test"]
    assert {i.canonical for i in disables[0].items} == {f"guid:{d.guids[n]}" for n in ("alice", "bob", "carol")}
    assert result.status == "done", result.to_dict()
    assert all(d.disabled.values())


def test_missing_account_is_partial_and_named(env):
    app, _d = env
    _, result = run(app, "disable-account", ["alice", "ghost"])
    assert result.status == "partial"
    [batch] = [o for o in result.outcomes if o.items]
    assert {i["requested"]: i["state"] for i in batch.items} == {"alice": "done", "ghost": "failed"}
    assert "ghost" in next(i["error"] for i in batch.items if i["requested"] == "ghost")
    with app.store.session() as s:
        assert s.get(Incident, "INC-A").status == "partial"


def test_a_later_step_failing_for_one_account_rolls_back_its_item_only(env):
    """with_groups: removing bob's groups fails (stop, rollback reverse): bob's disable — an item of the
    batch — is undone; alice and carol stay disabled and de-privileged."""
    app, d = env
    d.fail_groups.add("bob")
    _, result = run(app, "disable-account", ["alice", "bob", "carol"], with_groups=True)
    assert result.status == "partial", result.to_dict()
    assert d.disabled == {"alice": True, "bob": False, "carol": True}
    assert d.groups == {"alice": [], "bob": ["IT-Admins"], "carol": []}
    with app.store.session() as s:
        items = {i.requested: i.undone_at is not None for i in s.scalars(
            select(ActionItem).join(Action).where(Action.action == "disable_account", Action.kind == "apply"))}
    assert items == {"alice": False, "bob": True, "carol": False}


def test_enable_one_account_out_of_a_batch_by_another_spelling(env):
    app, d = env
    run(app, "disable-account", ["alice", "bob", "carol"])
    plan, result = run(app, "enable-account", ["BOB@lab.test"], incident="INC-B")
    assert result.status == "done", result.to_dict()
    assert d.disabled == {"alice": True, "bob": False, "carol": True}
    undo = [pa for pa in plan.actions if pa.action == "disable_account"]
    assert len(undo) == 1 and undo[0].args["accounts"] == ["bob"]
    _, result = run(app, "enable-account", ["alice", "carol"], incident="INC-B")
    assert result.status == "done" and not any(d.disabled.values())
    assert app.planner().active_actions(None, "disable_account") == []


def test_enable_account_says_a_password_reset_is_not_undone(env):
    """disable-account --reset-password, then enable-account: the plan says the reset cannot be undone."""
    app, d = env
    run(app, "disable-account", ["alice"], reset_password=True)
    plan, result = run(app, "enable-account", ["ALICE"], incident="INC-B")
    assert result.status == "done" and not d.disabled["alice"]
    assert any("reset_password" in n and "cannot be undone" in n for n in plan.notes), plan.notes


def test_one_account_named_twice_is_planned_once(env):
    """`alice` and `ALICE@lab.test` are one account (the directory says so): every step runs once for it."""
    app, d = env
    plan, result = run(app, "disable-account", ["alice", "ALICE@lab.test", "bob"])
    steps = [[(pa.step.id, tuple(i.requested for i in pa.items)) for pa in phase] for phase in plan.phases()]
    assert steps == [[("evidence", ("alice",)), ("evidence", ("bob",))], [("disable", ("alice", "bob"))],
                     [("sessions", ("alice",)), ("sessions", ("bob",))]], steps
    assert result.status == "done" and d.disabled["alice"] and d.disabled["bob"]


def test_replan_of_a_batch_covers_every_item(env):
    """The daemon's retry rebuilds a journaled action: a batch comes back whole (it used to come back as its
    label, 'alice, bob', taken for one account name) and is valid for the directory (it used to carry the
    journaled ``accounts`` beside each subject's ``account``, which the AD connector refuses: every retry of a
    transiently failed batch was refused)."""
    from agent.replan import replan
    app, _d = env
    run(app, "disable-account", ["alice", "bob"])
    [row] = app.planner().active_actions(None, "disable_account")
    plan = replan(app.planner(), row)
    assert [(pa.action, pa.args.get("accounts")) for pa in plan.actions] == [("disable_account", ["alice", "bob"])]


def test_a_crashed_change_found_in_effect_is_not_claimed_when_its_snapshot_shows_it_was_so(env, monkeypatch):
    """A run dies between a step's snapshot and its result: remove_privileged_groups for bob, who has no
    privileged membership. The next start reads the target — in effect — and must not record that the agent
    changed it: before, ``changed`` became 1, so `status` listed bob "out of privileged groups" and the report
    said the agent removed memberships it never touched (found by the AD crash matrix at a random kill)."""
    from agent.outcomes import Interrupted
    from agent.reconcile import reconcile
    app, d = env
    d.groups["bob"] = []

    def dies(self, s, args, snap):  # the process dies here: nothing after this is journaled
        raise Interrupted("killed")
    applies = FakeDirectory._apply_remove_privileged_groups
    monkeypatch.setattr(FakeDirectory, "_apply_remove_privileged_groups", dies)
    with pytest.raises(Interrupted):
        run(app, "disable-account", ["bob"], with_groups=True)
    monkeypatch.setattr(FakeDirectory, "_apply_remove_privileged_groups", applies)
    outcomes = reconcile(app.engine())
    assert [o.outcome for o in outcomes] == ["done"], outcomes
    with app.store.session() as s:
        row = s.scalars(select(Action).where(Action.action == "remove_privileged_groups")).one()
        items = list(s.scalars(select(ActionItem).where(ActionItem.action_id == row.id)))
    assert row.state == "done" and row.changed == 0 and [i.changed for i in items] == [0]
    assert "remove_privileged_groups" not in [a.action for a in app.planner().active_actions(None)]


def test_a_change_found_in_effect_before_anything_was_sent_is_not_claimed(env, monkeypatch):
    """The run dies before a step's snapshot is journaled (state intent: nothing was sent); the next start finds
    the effect there (bob has no privileged membership) — it was so before, the agent did not change it."""
    from agent.outcomes import Interrupted
    from agent.reconcile import reconcile
    app, d = env
    d.groups["bob"] = []

    def dies(self, s, args):
        raise Interrupted("killed")
    snapshots = FakeDirectory._snapshot_remove_privileged_groups
    monkeypatch.setattr(FakeDirectory, "_snapshot_remove_privileged_groups", dies)
    with pytest.raises(Interrupted):
        run(app, "disable-account", ["bob"], with_groups=True)
    monkeypatch.setattr(FakeDirectory, "_snapshot_remove_privileged_groups", snapshots)
    assert [o.outcome for o in reconcile(app.engine())] == ["done"]
    with app.store.session() as s:
        row = s.scalars(select(Action).where(Action.action == "remove_privileged_groups")).one()
    assert row.state == "done" and row.changed == 0
