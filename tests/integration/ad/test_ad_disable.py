"""disable_account and expire_sessions against a real Samba AD DC: effect, exact undo, idempotence."""

from __future__ import annotations

import pytest

from .helpers import run_apply, run_undo, user_bind

pytestmark = [pytest.mark.samba, pytest.mark.root]

DONT_EXPIRE_PASSWORD = 0x10000


class TestDisableAccount:
    def test_disable_blocks_the_users_own_bind_and_undo_restores_it(self, samba_dc, connector, dc_target,
                                                                    agent_creds, make_user):
        """After disable the user's LDAPS bind fails as 'account disabled'; after undo it works again."""
        name, password = make_user()
        assert user_bind(samba_dc, f"{name}@lab.test", password)[0]
        snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", {"account": name})
        assert result.changed and check.in_effect
        assert snap.data["userAccountControl"] == 0x200
        ok, message = user_bind(samba_dc, f"{name}@lab.test", password)
        assert not ok and "data 533" in message
        undo, check = run_undo(connector, dc_target, agent_creds, "disable_account", {"account": name}, snap)
        assert undo.changed and not check.in_effect
        assert user_bind(samba_dc, f"{name}@lab.test", password)[0]

    def test_undo_restores_the_exact_value_with_other_flags(self, samba_dc, connector, dc_target, agent_creds,
                                                            make_user):
        """userAccountControl comes back bit for bit, DONT_EXPIRE_PASSWORD included."""
        name, _ = make_user(userAccountControl=0x200 | DONT_EXPIRE_PASSWORD)
        snap, _result, _check = run_apply(connector, dc_target, agent_creds, "disable_account", {"account": name})
        assert int(samba_dc.read(name, ["userAccountControl"])["userAccountControl"][0]) == 0x10202
        run_undo(connector, dc_target, agent_creds, "disable_account", {"account": name}, snap)
        assert int(samba_dc.read(name, ["userAccountControl"])["userAccountControl"][0]) == 0x10200

    def test_apply_and_undo_are_idempotent(self, samba_dc, connector, dc_target, agent_creds, make_user):
        """A second apply reports changed=False and sends no modify; so does a second undo."""
        name, _ = make_user()
        args = {"account": f"{name}@lab.test"}
        snap, first, _ = run_apply(connector, dc_target, agent_creds, "disable_account", args)
        with connector.open(dc_target, agent_creds, _ctx()) as session:
            again = connector.apply(session, "disable_account", args, connector.snapshot(session, "disable_account",
                                                                                        args))
            assert not again.changed and session.modifies == 0
        assert first.changed
        undo1, _ = run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        undo2, _ = run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        assert undo1.changed and not undo2.changed

    def test_undo_of_an_already_disabled_account_keeps_it_disabled(self, samba_dc, connector, dc_target,
                                                                   agent_creds, make_user):
        """Disabling a disabled account changes nothing, and its undo does not enable it."""
        name, _ = make_user(userAccountControl=0x202)
        snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", {"account": name})
        assert not result.changed and check.in_effect
        undo, _ = run_undo(connector, dc_target, agent_creds, "disable_account", {"account": name}, snap)
        assert not undo.changed
        assert int(samba_dc.read(name, ["userAccountControl"])["userAccountControl"][0]) == 0x202

    def test_account_named_by_dn_with_a_cn_unlike_its_name(self, samba_dc, connector, dc_target, agent_creds,
                                                           make_user):
        """A DN whose CN differs from sAMAccountName (and holds a comma) resolves and disables the right user."""
        name, _ = make_user(cn="Smith, John (IT)")
        dn = samba_dc.dn_of(name)
        snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", {"account": dn})
        assert result.changed and check.in_effect and snap.data["account"]["sAMAccountName"] == name
        run_undo(connector, dc_target, agent_creds, "disable_account", {"account": dn}, snap)


class TestExpireSessions:
    def test_logon_hours_none_blocks_binds_and_undo_removes_it(self, samba_dc, connector, dc_target, agent_creds,
                                                               make_user):
        """logonHours = 21 zero bytes refuses new binds (data 530); undo removes the attribute it added."""
        name, password = make_user()
        snap, result, check = run_apply(connector, dc_target, agent_creds, "expire_sessions", {"account": name})
        assert result.changed and check.in_effect and snap.data["logonHours"] is None
        assert result.details["host_followups"][0]["user"] == name
        assert "Kerberos tickets already issued stay valid" in result.details["limitations"]
        ok, message = user_bind(samba_dc, name + "@lab.test", password)
        assert not ok and "data 530" in message
        undo, check = run_undo(connector, dc_target, agent_creds, "expire_sessions", {"account": name}, snap)
        assert undo.changed and not check.in_effect
        assert samba_dc.read(name, ["logonHours"]).get("logonHours", []) == []
        assert user_bind(samba_dc, name + "@lab.test", password)[0]

    def test_previous_logon_hours_are_restored_exactly_and_reruns_are_noops(self, samba_dc, connector, dc_target,
                                                                            agent_creds, make_user):
        """An existing logonHours value comes back byte for byte; second apply and undo change nothing."""
        hours = bytes([0xFF, 0x00, 0x0F] * 7)
        name, _ = make_user(logonHours=hours)
        snap, first, _ = run_apply(connector, dc_target, agent_creds, "expire_sessions", {"account": name})
        _, second, _ = run_apply(connector, dc_target, agent_creds, "expire_sessions", {"account": name})
        assert first.changed and not second.changed
        undo1, _ = run_undo(connector, dc_target, agent_creds, "expire_sessions", {"account": name}, snap)
        undo2, _ = run_undo(connector, dc_target, agent_creds, "expire_sessions", {"account": name}, snap)
        assert undo1.changed and not undo2.changed
        assert samba_dc.read(name, ["logonHours"])["logonHours"] == [hours]


def _ctx():
    from .helpers import CTX
    return CTX
