"""disable_account on many accounts in one action (``accounts: [...]``) against the real Samba DC: per-account
outcomes, protected/missing/ambiguous names never touched, exact undo, few round trips, injection, rights."""

from __future__ import annotations

import os

import ldap3
import pytest

from connectors.active_directory import batch_resolve as batch_resolve_module
from connectors.active_directory import batch as batch_module
from connectors.active_directory.accounts import name_filter, sid_to_str
from connectors.errors import InvalidInput, Rejected, Unreachable
from connectors.types import Credentials, Secret

from .helpers import CTX, highest_usn, run_apply, run_undo, set_uac, target_for, uac, user_bind, usn_changed
from .test_ad_safety import HARMLESS, INVALID

pytestmark = [pytest.mark.samba, pytest.mark.root]

DONT_EXPIRE = 0x10000
UAC_SCHEMA_GUID = "bf967a68-0de6-11d0-a285-00aa003049e2"  # schemaIDGUID of userAccountControl


def _by_name(result):
    return {o["requested"]: o for o in result.details["accounts"]}


def _warm(connector, target, creds):
    """Bind once first: a first bind writes lastLogonTimestamp, which would move the USNs being compared."""
    connector.open(target, creds, CTX).close()


class TestMixedBatch:
    def test_per_account_outcomes_and_exact_undo(self, samba_dc, connector, agent_creds, make_user):
        """Enabled, enabled with other flags, already disabled, missing, ambiguous, protected (by alias), listed
        protected (by DN) and a duplicate: each gets its own outcome; only the two enabled ones are written;
        undo restores each exact value, leaves the already-disabled one alone; a second undo sends nothing."""
        e1, e1_pw = make_user("bat")
        e2, _ = make_user("bat", userAccountControl=0x200 | DONT_EXPIRE)
        d1, _ = make_user("bat", userAccountControl=0x202)
        listed, _ = make_user("keep")
        other, _ = make_user("amb")
        clash = f"{other}@lab.test"  # other's UPN, and this new user's sAMAccountName
        samba_dc.create_user(clash, "Pw-Clash-user-1!", cn=f"clash {other}", userPrincipalName=f"c-{other}@lab.test")
        missing = f"nobody{os.getpid()}"
        target = target_for(samba_dc, protected_accounts=[listed])
        names = [e1, e2, d1, missing, clash, samba_dc.admin_bind_dn, samba_dc.dn_of(listed), f"{e1}@lab.test"]
        untouched = [d1, other, clash, samba_dc.admin_bind_dn, listed]
        _warm(connector, target, agent_creds)
        usns = {n: usn_changed(samba_dc, n) for n in untouched}

        snap, result, check = run_apply(connector, target, agent_creds, "disable_account", {"accounts": names})
        out = _by_name(result)
        assert result.changed and check.in_effect
        assert {n: o["outcome"] for n, o in out.items()} == {
            e1: "disabled", e2: "disabled", d1: "already_disabled", missing: "not_found", clash: "ambiguous",
            samba_dc.admin_bind_dn: "protected_account", samba_dc.dn_of(listed): "protected_account",
            f"{e1}@lab.test": "duplicate"}
        assert (out[e2]["userAccountControl_before"], out[e2]["userAccountControl_after"]) == (0x10200, 0x10202)
        assert result.details["counts"]["disabled"] == 2 and "disabled 2 of 8 accounts" in result.summary
        assert all(n in result.summary for n in (missing, clash))
        assert any(missing in w and "not found" in w for w in result.warnings)
        assert (uac(samba_dc, e1), uac(samba_dc, e2), uac(samba_dc, d1)) == (0x202, 0x10202, 0x202)
        ok, message = user_bind(samba_dc, f"{e1}@lab.test", e1_pw)
        assert not ok and "data 533" in message
        assert {n: usn_changed(samba_dc, n) for n in untouched} == usns  # nothing sent to them

        undo, check = run_undo(connector, target, agent_creds, "disable_account", {"accounts": names}, snap)
        out = _by_name(undo)
        assert undo.changed and not check.in_effect
        assert (out[e1]["outcome"], out[e2]["outcome"], out[d1]["outcome"]) == ("restored", "restored",
                                                                                 "left_disabled")
        assert (uac(samba_dc, e1), uac(samba_dc, e2), uac(samba_dc, d1)) == (0x200, 0x10200, 0x202)
        assert user_bind(samba_dc, f"{e1}@lab.test", e1_pw)[0]
        assert {n: usn_changed(samba_dc, n) for n in untouched} == usns

        with connector.open(target, agent_creds, CTX) as session:
            again = connector.undo(session, "disable_account", {"accounts": names}, snap)
            assert not again.changed and session.modifies == 0
        assert {o["outcome"] for o in again.details["accounts"] if o["requested"] in (e1, e2)} == {"already_restored"}

    def test_a_batch_of_only_unusable_names_is_refused_at_the_snapshot(self, samba_dc, connector, dc_target,
                                                                       agent_creds):
        """Nothing to act on (missing, protected by alias): Rejected before any modify, naming each name."""
        _warm(connector, dc_target, agent_creds)
        before = highest_usn(samba_dc)
        names = ["nobody-at-all", f"CN=krbtgt,CN=Users,{samba_dc.base_dn}"]
        with pytest.raises(Rejected, match="none of the 2 accounts") as caught:
            run_apply(connector, dc_target, agent_creds, "disable_account", {"accounts": names})
        assert [a["status"] for a in caught.value.detail["accounts"]] == ["not_found", "protected_account"]
        assert highest_usn(samba_dc) == before


class TestRoundTrips:
    def test_one_search_per_step_and_pipelined_modifies_on_one_connection(self, samba_dc, connector, dc_target,
                                                                          agent_creds, make_user):
        """30 accounts: snapshot 1 search, apply 30 modifies and no search, verify 1 search, undo 1 search and
        30 modifies — all on the one pooled connection."""
        names = [make_user("rt")[0] for _ in range(30)]
        args = {"accounts": names}
        counts = []
        with connector.open(dc_target, agent_creds, CTX) as session:
            for step in ("snapshot", "apply", "verify"):
                before = (session.searches, session.modifies)
                if step == "snapshot":
                    snap = connector.snapshot(session, "disable_account", args)
                elif step == "apply":
                    assert connector.apply(session, "disable_account", args, snap).changed
                else:
                    assert connector.verify(session, "disable_account", args).in_effect
                counts.append((session.searches - before[0], session.modifies - before[1]))
        with connector.open(dc_target, agent_creds, CTX) as session:
            assert connector.undo(session, "disable_account", args, snap).changed
            counts.append((session.searches, session.modifies))
        assert counts == [(1, 0), (0, 30), (1, 0), (1, 30)]
        assert connector.pool.opened == 1 and all(uac(samba_dc, n) == 0x200 for n in names)

    def test_names_are_split_across_filters_and_pages(self, samba_dc, connector, dc_target, agent_creds,
                                                      make_user, monkeypatch):
        """More names than one filter takes → several pipelined searches; a small page size → several pages;
        the outcome is the same as in one request."""
        names = [make_user("pg")[0] for _ in range(7)]
        monkeypatch.setattr(batch_resolve_module, "NAMES_PER_FILTER", 3)
        monkeypatch.setattr(batch_module, "NAMES_PER_FILTER", 3)
        snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", {"accounts": names})
        assert result.details["counts"] == {"disabled": 7} and check.in_effect
        run_undo(connector, dc_target, agent_creds, "disable_account", {"accounts": names}, snap)
        with connector.open(dc_target, agent_creds, CTX) as session:
            entries, more = session.search_many(samba_dc.base_dn, [name_filter(names)], ["sAMAccountName"],
                                                page_size=2)
            assert sorted(e["attributes"]["sAMAccountName"][0].decode() for e in entries) == sorted(names)
            assert not more and session.searches == 4  # pages of 2, 2, 2, 1
            first, more = session.search_many(samba_dc.base_dn, [name_filter(names)], ["sAMAccountName"],
                                              page_size=2, first_page_only=True)
            assert len(first) == 2 and more


class TestChangedBehindOurBack:
    def test_values_changed_between_snapshot_and_apply(self, samba_dc, connector, dc_target, agent_creds,
                                                       make_user):
        """After the snapshot: one account gets another flag, one is disabled by someone else, one is deleted.
        Each is settled alone; the rest go through; undo restores the recorded values (warning where the
        value is not the one this action set) and reports the deleted one."""
        plain = [make_user("chg")[0] for _ in range(3)]
        flagged, disabled, deleted = (make_user("chg")[0] for _ in range(3))
        names = [*plain, flagged, disabled, deleted]
        args = {"accounts": names}
        with connector.open(dc_target, agent_creds, CTX) as session:
            snap = connector.snapshot(session, "disable_account", args)
        set_uac(samba_dc, flagged, 0x200 | DONT_EXPIRE)
        set_uac(samba_dc, disabled, 0x10202)
        assert samba_dc.admin_connection().delete(samba_dc.dn_of(deleted))
        with connector.open(dc_target, agent_creds, CTX) as session:
            result = connector.apply(session, "disable_account", args, snap)
            check = connector.verify(session, "disable_account", args)
        out = _by_name(result)
        assert [out[n]["outcome"] for n in plain] == ["disabled"] * 3 and check.in_effect
        assert out[flagged]["outcome"] == "disabled" and uac(samba_dc, flagged) == 0x10202
        assert "changed since the snapshot" in out[flagged]["warning"]
        assert out[disabled]["outcome"] == "already_disabled" and uac(samba_dc, disabled) == 0x10202
        assert out[deleted]["outcome"] == "failed" and "no longer exists" in out[deleted]["error"]
        undo, check = run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        out = _by_name(undo)
        assert not check.in_effect and all(uac(samba_dc, n) == 0x200 for n in [*plain, flagged, disabled])
        assert "changed since the snapshot" in out[flagged]["warning"]
        assert out[deleted]["outcome"] == "failed"

    def test_retrying_an_apply_that_got_half_way_is_safe(self, samba_dc, connector, dc_target, agent_creds,
                                                         make_user):
        """An engine retry reuses the snapshot after an attempt that disabled some accounts: those come out as
        this action's changes (so undo restores them), the others are disabled now."""
        names = [make_user("rtr")[0] for _ in range(4)]
        args = {"accounts": names}
        with connector.open(dc_target, agent_creds, CTX) as session:
            snap = connector.snapshot(session, "disable_account", args)
        for name in names[:2]:  # what the first, interrupted attempt had done
            set_uac(samba_dc, name, 0x202)
        with connector.open(dc_target, agent_creds, CTX) as session:
            result = connector.apply(session, "disable_account", args, snap)
        assert result.details["counts"] == {"disabled": 4}
        run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        assert all(uac(samba_dc, n) == 0x200 for n in names)

    def test_dc_gone_mid_action_is_transient_then_the_retry_completes(self, samba_dc, connector, dc_target,
                                                                     agent_creds, make_user):
        """The DC stops between snapshot and apply: Unreachable (transient), nothing half-recorded; once it is
        back, the same apply with the same snapshot disables every account and undo restores them."""
        names = [make_user("down")[0] for _ in range(3)]
        args = {"accounts": names}
        session = connector.open(dc_target, agent_creds, CTX)
        snap = connector.snapshot(session, "disable_account", args)
        samba_dc.stop()
        try:
            with pytest.raises(Unreachable) as caught:
                connector.apply(session, "disable_account", args, snap)
            assert caught.value.transient and session.broken
            session.close()
        finally:
            samba_dc.start()
        _, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", args)
        assert result.details["counts"] == {"disabled": 3} and check.in_effect
        with connector.open(dc_target, agent_creds, CTX) as session:
            connector.undo(session, "disable_account", args, snap)
        assert all(uac(samba_dc, n) == 0x200 for n in names)


class TestInjectionInBatchedNames:
    @pytest.mark.parametrize("value", INVALID)
    def test_invalid_values_in_a_list_are_refused_before_connecting(self, samba_dc, connector, value):
        """One bad entry refuses the whole list, naming its index, before any connection."""
        with pytest.raises(InvalidInput, match=r"accounts\[1\]"):
            connector.validate(target_for(samba_dc), "disable_account", {"accounts": ["someone", value]})
        assert connector.pool.opened == 0

    def test_harmless_values_find_nothing_and_only_the_real_account_is_written(self, samba_dc, connector,
                                                                               dc_target, agent_creds, make_user):
        """Escaped metacharacters in one OR filter match no account (not ir-agent, not the real user); the
        directory records exactly one write: the real user's."""
        real, _ = make_user("inj")
        names = [*HARMLESS, real]
        _warm(connector, dc_target, agent_creds)
        before = highest_usn(samba_dc)
        snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", {"accounts": names})
        out = _by_name(result)
        assert all(out[v]["outcome"] == "not_found" for v in HARMLESS)
        assert out[real]["outcome"] == "disabled" and check.in_effect
        assert highest_usn(samba_dc) == before + 1 and uac(samba_dc, "ir-agent") == 0x200
        run_undo(connector, dc_target, agent_creds, "disable_account", {"accounts": names}, snap)


class TestRights:
    def test_partial_rights_disable_what_may_be_changed_and_stay_undoable(self, samba_dc, connector, dc_target,
                                                                          make_user):
        """A bind account allowed to write userAccountControl on one of three accounts: that one is disabled,
        the two others fail per account (insufficient rights); verify counts only what the agent may change,
        so the action is done and its undo restores the one it changed."""
        weak, weak_pw = make_user("deleg")
        allowed, denied1, denied2 = (make_user("dlg")[0] for _ in range(3))
        conn = samba_dc.admin_connection()
        conn.search(samba_dc.dn_of(weak), "(objectClass=*)", search_scope=ldap3.BASE, attributes=["objectSid"])
        sid = sid_to_str(conn.response[0]["raw_attributes"]["objectSid"][0])
        samba_dc.samba_tool("dsacl", "set", f"--objectdn={samba_dc.dn_of(allowed)}",
                            f"--sddl=(OA;;WP;{UAC_SCHEMA_GUID};;{sid})")
        creds = Credentials(f"{weak}@lab.test", Secret(weak_pw))
        args = {"accounts": [allowed, denied1, denied2]}
        snap, result, check = run_apply(connector, dc_target, creds, "disable_account", args)
        out = _by_name(result)
        assert out[allowed]["outcome"] == "disabled"
        assert all(out[n]["outcome"] == "failed" and "insufficient access" in out[n]["error"]
                   for n in (denied1, denied2))
        assert check.in_effect and {x["requested"] for x in check.observed["not_counted"]} == {denied1, denied2}
        undo, check = run_undo(connector, dc_target, creds, "disable_account", args, snap)
        assert _by_name(undo)[allowed]["outcome"] == "restored" and not check.in_effect
        assert all(uac(samba_dc, n) == 0x200 for n in (allowed, denied1, denied2))

    def test_no_rights_at_all_fails_the_action_with_nothing_changed(self, samba_dc, connector, dc_target,
                                                                    make_user):
        """Every modify refused: the action fails (Rejected, permanent) and the directory is unchanged."""
        weak, weak_pw = make_user("weak")
        victims = [make_user("vic")[0] for _ in range(2)]
        creds = Credentials(f"{weak}@lab.test", Secret(weak_pw))
        _warm(connector, dc_target, creds)
        before = highest_usn(samba_dc)
        with pytest.raises(Rejected, match="no account was disabled") as caught:
            run_apply(connector, dc_target, creds, "disable_account", {"accounts": victims})
        assert not caught.value.transient and highest_usn(samba_dc) == before
