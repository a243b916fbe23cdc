"""remove_privileged_groups against a real Samba AD DC: direct and nested paths, exact restore, idempotence."""

from __future__ import annotations

import itertools

import ldap3
import pytest

from .helpers import CTX, run_apply, run_undo, target_for

pytestmark = [pytest.mark.samba, pytest.mark.root]

_n = itertools.count(1)


def _memberof(dc, name):
    return sorted(dc.read(name, ["memberOf"]).get("memberOf", []))


def _chain(dc, name):
    """Every group the user is in, transitively (the server's own view)."""
    conn = dc.admin_connection()
    dn = ldap3.utils.conv.escape_filter_chars(dc.dn_of(name))
    conn.search(dc.base_dn, f"(&(objectClass=group)(member:1.2.840.113556.1.4.1941:={dn}))", attributes=["cn"])
    return sorted(str(e.entry_dn) for e in conn.entries)


@pytest.fixture
def nested_setup(samba_dc, make_user):
    """A user directly in Domain Admins, in 'helpdesk' (⊂ 'tier1' ⊂ Administrators) and in a plain group."""
    i = next(_n)
    helpdesk, tier1, plain = (samba_dc.create_group(f"{g}-{i}") for g in ("helpdesk", "tier1", "plain"))
    samba_dc.add_members(tier1, [helpdesk])
    samba_dc.add_members(f"CN=Administrators,CN=Builtin,{samba_dc.base_dn}", [tier1])
    name, _ = make_user()
    samba_dc.add_members("Domain Admins", [name])
    samba_dc.add_members(helpdesk, [name])
    samba_dc.add_members(plain, [name])
    return {"name": name, "helpdesk": helpdesk, "tier1": tier1, "plain": plain,
            "domain_admins": samba_dc.dn_of("Domain Admins")}


class TestRemovePrivilegedGroups:
    def test_removes_direct_and_nested_paths_and_undo_restores_them(self, samba_dc, connector, dc_target,
                                                                    agent_creds, nested_setup):
        """Domain Admins and the nested helpdesk path go, the plain group stays; undo re-adds exactly those two."""
        s = nested_setup
        before = _memberof(samba_dc, s["name"])
        assert len(before) == 3
        snap, result, check = run_apply(connector, dc_target, agent_creds, "remove_privileged_groups",
                                        {"account": s["name"]})
        assert result.changed and check.in_effect
        assert sorted(result.details["removed"]) == sorted([s["domain_admins"], s["helpdesk"]])
        assert result.details["paths"][s["helpdesk"]] == ["Administrators"]
        assert s["tier1"] in snap.data["transitive"]  # the nested membership was recorded
        assert _memberof(samba_dc, s["name"]) == [s["plain"]]
        assert _chain(samba_dc, s["name"]) == [s["plain"]]  # no path to a privileged group remains
        assert samba_dc.read(s["tier1"], ["member"])["member"] == [s["helpdesk"]]  # groups themselves untouched
        undo, check = run_undo(connector, dc_target, agent_creds, "remove_privileged_groups",
                               {"account": s["name"]}, snap)
        assert undo.changed and not check.in_effect
        assert sorted(undo.details["restored"]) == sorted([s["domain_admins"], s["helpdesk"]])
        assert _memberof(samba_dc, s["name"]) == before

    def test_apply_and_undo_are_idempotent(self, samba_dc, connector, dc_target, agent_creds, nested_setup):
        """A second apply and a second undo report changed=False and send no modify."""
        args = {"account": nested_setup["name"]}
        snap, first, _ = run_apply(connector, dc_target, agent_creds, "remove_privileged_groups", args)
        with connector.open(dc_target, agent_creds, CTX) as session:
            second = connector.apply(session, "remove_privileged_groups", args,
                                     connector.snapshot(session, "remove_privileged_groups", args))
            assert not second.changed and session.modifies == 0
        undo1, _ = run_undo(connector, dc_target, agent_creds, "remove_privileged_groups", args, snap)
        with connector.open(dc_target, agent_creds, CTX) as session:
            undo2 = connector.undo(session, "remove_privileged_groups", args, snap)
            assert not undo2.changed and session.modifies == 0
        assert first.changed and undo1.changed

    def test_configured_extra_privileged_group(self, samba_dc, connector, agent_creds, make_user):
        """A group listed in options.privileged_groups counts as privileged; unlisted it does not."""
        i = next(_n)
        tier0 = samba_dc.create_group(f"tier0-{i}")
        name, _ = make_user()
        samba_dc.add_members(tier0, [name])
        _, plain_result, _ = run_apply(connector, target_for(samba_dc), agent_creds, "remove_privileged_groups",
                                       {"account": name})
        assert not plain_result.changed and _memberof(samba_dc, name) == [tier0]
        target = target_for(samba_dc, privileged_groups=[f"tier0-{i}"])
        snap, result, check = run_apply(connector, target, agent_creds, "remove_privileged_groups",
                                        {"account": name})
        assert result.changed and check.in_effect and _memberof(samba_dc, name) == []
        run_undo(connector, target, agent_creds, "remove_privileged_groups", {"account": name}, snap)
        assert _memberof(samba_dc, name) == [tier0]

    def test_unprivileged_user_is_left_alone(self, samba_dc, connector, dc_target, agent_creds, make_user):
        """A user with no privileged path: changed=False, verify in effect, nothing sent."""
        name, _ = make_user()
        snap, result, check = run_apply(connector, dc_target, agent_creds, "remove_privileged_groups",
                                        {"account": name})
        assert not result.changed and check.in_effect and snap.data["to_remove"] == []


class TestCaptureEvidence:
    def test_evidence_file_holds_the_account_state_and_changes_nothing(self, samba_dc, connector, dc_target,
                                                                       agent_creds, nested_setup):
        """capture_evidence returns account_<name>.json with UAC, groups and times, and sends no modify."""
        import json

        name = nested_setup["name"]
        with connector.open(dc_target, agent_creds, CTX) as session:
            result = connector.apply(session, "capture_evidence", {"account": name},
                                     connector.snapshot(session, "capture_evidence", {"account": name}))
            assert session.modifies == 0
        assert not result.changed and connector.actions["capture_evidence"].mutating is False
        record = json.loads(result.details["evidence"][f"account_{name}.json"])
        assert record["attributes"]["sAMAccountName"] == name
        assert record["attributes"]["userAccountControl"] == "512"
        assert "NORMAL_ACCOUNT" in record["derived"]["userAccountControl_flags"]
        assert len(record["attributes"]["memberOf"]) == 3
        assert nested_setup["helpdesk"] in record["groups"]["paths"]
        assert record["derived"]["pwdLastSet_utc"].startswith("20")
