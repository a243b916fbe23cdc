"""disable_account's compare-and-swap against the real Samba DC: one modify, no read, and the right outcome when
the value changed between the snapshot and the apply (someone else, a rename, the same change)."""

from __future__ import annotations

import pytest

from connectors.active_directory.uac import cas

from .helpers import CTX, run_undo, set_uac, uac, user_bind, usn_changed

pytestmark = [pytest.mark.samba, pytest.mark.root]

DONT_EXPIRE = 0x10000


def _snapshot(connector, target, creds, args):
    connector.validate(target, "disable_account", args)
    with connector.open(target, creds, CTX) as session:
        return connector.snapshot(session, "disable_account", args)


def _apply(connector, target, creds, args, snap):
    """apply on its own session: returns the result and the (searches, modifies) it sent."""
    with connector.open(target, creds, CTX) as session:
        result = connector.apply(session, "disable_account", args, snap)
        return result, (session.searches, session.modifies)


class TestTheDCsCompareAndSwap:
    def test_a_stale_swap_is_refused_and_writes_nothing(self, samba_dc, connector, dc_target, agent_creds,
                                                        make_user):
        """delete <old> + add <new> with a wrong <old>: noSuchAttribute (16), value and uSNChanged unchanged."""
        name, _ = make_user()
        dn = samba_dc.dn_of(name)
        before = usn_changed(samba_dc, name)
        with connector.open(dc_target, agent_creds, CTX) as session:
            assert session.modify(dn, cas(0x10200, 0x10202), ok_codes=(16,)) == 16
            assert session.modify(dn, cas(0x200, 0x202)) == 0
        assert uac(samba_dc, name) == 0x202 and usn_changed(samba_dc, name) > before

    def test_a_swap_onto_the_present_value_succeeds_without_writing(self, samba_dc, connector, dc_target,
                                                                   agent_creds, make_user):
        """Measured Samba behaviour the connector is built around: if <new> is already stored, the swap
        answers success whatever <old> says, and nothing is written (uSNChanged does not move)."""
        name, _ = make_user(userAccountControl=0x202)
        before = usn_changed(samba_dc, name)
        with connector.open(dc_target, agent_creds, CTX) as session:
            assert session.modify(samba_dc.dn_of(name), cas(0x10200, 0x202)) == 0
        assert uac(samba_dc, name) == 0x202 and usn_changed(samba_dc, name) == before


class TestApply:
    def test_apply_is_one_modify_and_no_read(self, samba_dc, connector, dc_target, agent_creds, make_user):
        """After the snapshot, apply sends exactly one modify and no search."""
        name, password = make_user()
        snap = _snapshot(connector, dc_target, agent_creds, {"account": name})
        result, (searches, modifies) = _apply(connector, dc_target, agent_creds, {"account": name}, snap)
        assert result.changed and (searches, modifies) == (0, 1)
        assert result.details["userAccountControl_after"] == 0x202 and uac(samba_dc, name) == 0x202
        assert not user_bind(samba_dc, f"{name}@lab.test", password)[0]

    def test_flags_changed_between_snapshot_and_apply(self, samba_dc, connector, dc_target, agent_creds,
                                                      make_user):
        """Someone set DONT_EXPIRE_PASSWORD after the snapshot: the swap is refused, the account is read again
        and disabled from its current value, with a warning; undo restores the *recorded* value, warning too."""
        name, _ = make_user()
        args = {"account": name}
        snap = _snapshot(connector, dc_target, agent_creds, args)
        set_uac(samba_dc, name, 0x200 | DONT_EXPIRE)
        result, (searches, modifies) = _apply(connector, dc_target, agent_creds, args, snap)
        assert result.changed and uac(samba_dc, name) == 0x10202
        assert (searches, modifies) == (1, 2)  # the refused swap, one read, the swap from the current value
        assert result.details["userAccountControl_before"] == 0x10200
        assert any("changed since the snapshot" in w for w in result.warnings)
        undo, check = run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        assert undo.changed and not check.in_effect and uac(samba_dc, name) == 0x200
        assert any("changed since the snapshot" in w for w in undo.warnings)

    def test_disabled_by_someone_else_between_snapshot_and_apply(self, samba_dc, connector, dc_target,
                                                                 agent_creds, make_user):
        """Someone disabled it (with another flag) after the snapshot: nothing more is written, changed=False."""
        name, _ = make_user()
        snap = _snapshot(connector, dc_target, agent_creds, {"account": name})
        set_uac(samba_dc, name, 0x10202)
        before = usn_changed(samba_dc, name)
        result, (_searches, modifies) = _apply(connector, dc_target, agent_creds, {"account": name}, snap)
        assert not result.changed and modifies == 1  # only the refused swap
        assert "already disabled" in result.summary and any("changed since" in w for w in result.warnings)
        assert uac(samba_dc, name) == 0x10202 and usn_changed(samba_dc, name) == before

    def test_the_same_change_made_by_someone_else_counts_as_ours(self, samba_dc, connector, dc_target,
                                                                agent_creds, make_user):
        """Someone set exactly old | 0x2 after the snapshot. Samba answers the swap with success (see above),
        so this is reported as this action's change — as an engine retry after a lost answer must be — and
        undo restores the recorded value. (On AD the swap fails and the re-read says the same, with a note.)"""
        name, _ = make_user()
        args = {"account": name}
        snap = _snapshot(connector, dc_target, agent_creds, args)
        set_uac(samba_dc, name, 0x202)
        result, _ = _apply(connector, dc_target, agent_creds, args, snap)
        assert result.changed and uac(samba_dc, name) == 0x202
        undo, _ = run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        assert undo.changed and uac(samba_dc, name) == 0x200

    def test_account_renamed_between_snapshot_and_apply(self, samba_dc, connector, dc_target, agent_creds,
                                                        make_user):
        """The recorded DN is gone (renamed): noSuchObject, found again by objectGUID, disabled there."""
        name, _ = make_user()
        args = {"account": name}
        snap = _snapshot(connector, dc_target, agent_creds, args)
        conn = samba_dc.admin_connection()
        assert conn.modify_dn(samba_dc.dn_of(name), f"CN={name}-renamed")
        result, _ = _apply(connector, dc_target, agent_creds, args, snap)
        assert result.changed and result.details["account"]["dn"].startswith(f"CN={name}-renamed,")
        assert uac(samba_dc, name) == 0x202
        undo, _ = run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        assert undo.changed and uac(samba_dc, name) == 0x200
