"""Protected accounts, ambiguous names and filter injection: refused or harmless, and nothing is written.

"Nothing written" is proved twice: the session's modify counter stays 0, and the DC's highestCommittedUSN (it
grows with every write anywhere in the directory) is unchanged.
"""

from __future__ import annotations

import ldap3
import pytest

from connectors.errors import InvalidInput, Rejected

from .helpers import CTX, target_for

pytestmark = [pytest.mark.samba, pytest.mark.root]

ACTIONS = ["disable_account", "remove_privileged_groups", "reset_password", "expire_sessions"]


def _usn(dc, connector=None, target=None, creds=None) -> int:
    """highestCommittedUSN; first binds the connector once, since a first bind records lastLogonTimestamp."""
    if connector is not None:
        connector.open(target, creds, CTX).close()
    conn = dc.admin_connection()
    conn.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["highestCommittedUSN"])
    return int(conn.entries[0].highestCommittedUSN.value)


def _attempt(connector, target, creds, action, account):
    """validate → open → snapshot → apply, as the engine would; returns (exception, modifies sent)."""
    connector.validate(target, action, {"account": account})
    with connector.open(target, creds, CTX) as session:
        try:
            snap = connector.snapshot(session, action, {"account": account})
            connector.apply(session, action, {"account": account}, snap)
        except (Rejected, InvalidInput) as exc:
            return exc, session.modifies
    return None, session.modifies


class TestProtectedAccounts:
    @pytest.mark.parametrize("account", ["Administrator", "administrator@lab.test", "krbtgt", "KRBTGT@lab.test",
                                         "LAB-breakglass"])
    def test_refused_by_name_before_connecting(self, samba_dc, connector, account):
        """Built-in and listed protected names are InvalidInput in validate, before any connection."""
        target = target_for(samba_dc, protected_accounts=["LAB-breakglass"])
        for action in ACTIONS:
            with pytest.raises(InvalidInput, match="protected"):
                connector.validate(target, action, {"account": account})
        assert connector.pool.opened == 0

    @pytest.mark.parametrize("who", ["admin_dn", "krbtgt_dn", "bind_account", "listed_by_dn"])
    def test_refused_after_resolution_with_no_modify(self, samba_dc, connector, dc_target, agent_creds,
                                                     make_user, who):
        """Aliases the name check cannot see (DNs, the bind account) are refused by SID/DN before any modify."""
        listed, _ = make_user("keep")
        accounts = {"admin_dn": samba_dc.admin_bind_dn, "krbtgt_dn": f"CN=krbtgt,CN=Users,{samba_dc.base_dn}",
                    "bind_account": "ir-agent", "listed_by_dn": samba_dc.dn_of(listed)}
        target = target_for(samba_dc, protected_accounts=[listed])
        before = _usn(samba_dc, connector, target, agent_creds)
        for action in ACTIONS:
            exc, modifies = _attempt(connector, target, agent_creds, action, accounts[who])
            assert isinstance(exc, Rejected) and exc.detail["reason"] == "protected_account", action
            assert modifies == 0
        assert _usn(samba_dc) == before


class TestAmbiguousAndMissing:
    def test_name_matching_two_accounts_is_refused(self, samba_dc, connector, dc_target, agent_creds, make_user):
        """'x@lab.test' as one user's sAMAccountName and another's UPN: refused as ambiguous, both untouched."""
        other, _ = make_user("amb")
        clash = f"{other}@lab.test"  # other's UPN ...
        samba_dc.create_user(clash, "Pw-Clash-user-1!", cn=f"clash {other}",
                             userPrincipalName=f"clash-{other}@lab.test")  # ... and this user's sAMAccountName
        before = _usn(samba_dc, connector, dc_target, agent_creds)
        exc, modifies = _attempt(connector, dc_target, agent_creds, "disable_account", clash)
        assert isinstance(exc, Rejected) and exc.detail["reason"] == "ambiguous" and len(exc.detail["matches"]) == 2
        assert modifies == 0 and _usn(samba_dc) == before

    def test_missing_account_names_the_value(self, samba_dc, connector, dc_target, agent_creds):
        """An unknown account is Rejected (permanent) with the value in the message."""
        exc, modifies = _attempt(connector, dc_target, agent_creds, "disable_account", "nobody-here")
        assert isinstance(exc, Rejected) and "nobody-here" in str(exc) and not exc.transient and modifies == 0


INVALID = ["*", "a*", "*)(objectClass=*", "\\00", "\\2a", "a\\2a*", "x\x00y", "bob\n", " bob", "a" * 257,
           "a,b", "x=y", "bob)(sAMAccountName=ir-agent", "CN=x,DC=notlab,DC=test", "CN=x,DC=lab", "<script>", "a|b",
           "CN=x,DC=elsewhere,DC=org", "CN=broken\\", "\u200bbob"]
HARMLESS = [")(", "ir-agent)(cn", "(", "ir-agent)", "ålice", "名前", "a" * 256, "ir-agent@",
            "@lab.test", "CN=ghost,CN=Users,DC=lab,DC=test", "CN=ir-agent)(x,CN=Users,DC=lab,DC=test"]


class TestInjectionCorpus:
    @pytest.mark.parametrize("value", INVALID)
    def test_invalid_values_are_rejected_before_connecting(self, samba_dc, connector, value):
        """Wildcards, backslash escapes, NUL/control characters, DN tricks and overlong values never reach a filter."""
        with pytest.raises(InvalidInput) as caught:
            connector.validate(target_for(samba_dc), "disable_account", {"account": value})
        assert "account" in str(caught.value)

    def test_harmless_values_find_nothing_and_change_nothing(self, samba_dc, connector, dc_target, agent_creds):
        """Values that pass validation are escaped: they match no account (not even ir-agent) and write nothing."""
        before = _usn(samba_dc, connector, dc_target, agent_creds)
        for value in HARMLESS:
            exc, modifies = _attempt(connector, dc_target, agent_creds, "disable_account", value)
            assert isinstance(exc, Rejected) and exc.detail["reason"] == "not_found", value
            assert modifies == 0
        assert _usn(samba_dc) == before

    def test_non_ascii_name_finds_exactly_that_user(self, samba_dc, connector, dc_target, agent_creds):
        """A real non-ASCII sAMAccountName resolves to that user only (positive control for the corpus)."""
        samba_dc.create_user("jürgen-ß", "Pw-Jurgen-user-1!", userPrincipalName="juergen@lab.test")
        with connector.open(dc_target, agent_creds, CTX) as session:
            result = connector.apply(session, "capture_evidence", {"account": "jürgen-ß"}, None)
        assert result.details["account"]["sAMAccountName"] == "jürgen-ß"
