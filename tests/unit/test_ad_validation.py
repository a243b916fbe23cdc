"""Pure checks of the AD connector: options, account names, passwords, previews, log filtering, exports."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import connectors.active_directory as ad
from connectors.active_directory.accounts import sid_to_str, validate_account
from connectors.active_directory.options import DirectoryOptions, dn_within
from connectors.active_directory.password import SecretRecordFilter, generate_password
from connectors.errors import InvalidInput, TLSError
from connectors.types import ConnectorContext, Target

BASE = {"base_dn": "DC=lab,DC=test", "server_name": "dc1.lab.test"}


def target(**options):
    return Target("corp", "account", "10.0.0.5", "active_directory", options={**BASE, **options})


OPTS = DirectoryOptions.from_target(target())


class TestOptions:
    def test_defaults(self):
        """LDAPS on 636 by default, StartTLS on 389 when asked."""
        assert (OPTS.port, OPTS.starttls) == (636, False)
        assert DirectoryOptions.from_target(target(starttls=True)).port == 389

    @pytest.mark.parametrize("option", ["tls", "use_ssl", "validate", "verify", "insecure", "allow_plain"])
    def test_weakening_tls_is_refused(self, option):
        """Any option that could turn TLS or validation off is a TLSError."""
        with pytest.raises(TLSError):
            DirectoryOptions.from_target(target(**{option: False}))

    @pytest.mark.parametrize("options", [{"base_dn": ""}, {"base_dn": "not a dn"}, {"port": 0}, {"port": "636"},
                                         {"starttls": "yes"}, {"server_name": "bad name"}, {"startls": True},
                                         {"privileged_groups": "Domain Admins"}, {"protected_accounts": [""]}])
    def test_bad_options_are_invalid_input(self, options):
        """Malformed options (and typos such as 'startls') are refused with the option named."""
        with pytest.raises(InvalidInput):
            DirectoryOptions.from_target(target(**options))

    def test_address_must_be_pinned(self):
        """A DNS name as the target address is refused: names are resolved and pinned before connectors run."""
        with pytest.raises(InvalidInput, match="not an IP"):
            DirectoryOptions.from_target(Target("corp", "account", "dc1.lab.test", "active_directory",
                                                options=BASE))


class TestAccountNames:
    @pytest.mark.parametrize("value", ["alice", "alice@lab.test", "CN=Smith\\, John,CN=Users,DC=lab,DC=test",
                                       "ålice", "john(it)", "a" * 256])
    def test_accepted(self, value):
        """Names, UPNs, escaped DNs inside the base and non-ASCII names pass."""
        assert validate_account(value, OPTS) == value

    @pytest.mark.parametrize("value", ["", None, 5, "a" * 257, "x\x00", "x\n", "\u202ealice", " alice", "a*",
                                       "\\2a", "a;b", "a[b]", "CN=x,DC=other,DC=test", "CN=x,DC=notlab,DC=test"])
    def test_rejected(self, value):
        """Control/format characters, wildcards, escapes, AD-forbidden characters and foreign DNs are refused."""
        with pytest.raises(InvalidInput, match="account"):
            validate_account(value, OPTS)

    @settings(max_examples=200, deadline=None)
    @given(st.text(min_size=1, max_size=300))
    def test_whatever_passes_contains_no_filter_metacharacter_unescaped(self, value):
        """Anything validate accepts as a name holds none of * \\ NUL (the filter escaper handles the rest)."""
        try:
            validate_account(value, OPTS)
        except InvalidInput:
            return
        if "=" not in value:
            assert not {"*", "\\", "\x00"} & set(value)

    def test_dn_within_compares_rdns_not_strings(self):
        """DC=notlab,DC=test is not inside DC=lab,DC=test even though the string ends alike."""
        assert dn_within("CN=a,DC=lab,DC=test", "dc=lab, dc=test")
        assert not dn_within("CN=a,DC=notlab,DC=test", "DC=lab,DC=test")

    def test_sid_decoding(self):
        """A binary objectSid decodes to its S-1-5-21-... string."""
        raw = bytes.fromhex("010500000000000515000000286e59d77d2327d3ebd367634e040000")
        assert sid_to_str(raw) == "S-1-5-21-3612962344-3542557565-1667748843-1102"


class TestPasswords:
    def test_generated_passwords_are_strong_and_distinct(self):
        """32 characters, all four classes, never containing the account name."""
        seen = {generate_password(avoid="abc") for _ in range(200)}
        assert len(seen) == 200
        for pw in seen:
            assert len(pw) == 32 and "abc" not in pw.lower()
            assert any(c.isupper() for c in pw) and any(c.islower() for c in pw) and any(c.isdigit() for c in pw)

    def test_log_filter_drops_password_records(self):
        """ldap3 records naming unicodePwd are dropped, others pass."""
        f = SecretRecordFilter()
        rec = logging.LogRecord("ldap3", logging.DEBUG, "x", 1, "MODIFY %s", ({"type": "unicodePwd"},), None)
        assert not f.filter(rec)
        assert f.filter(logging.LogRecord("ldap3", logging.DEBUG, "x", 1, "search done", (), None))
        assert any(isinstance(x, SecretRecordFilter) for x in logging.getLogger("ldap3").filters)


class TestConnectorSurface:
    def test_action_specs(self):
        """reset_password is declared irreversible; capture_evidence non-mutating; all act on accounts."""
        specs = ad.ActiveDirectoryConnector.actions
        assert set(specs) == {"disable_account", "remove_privileged_groups", "reset_password", "expire_sessions",
                              "capture_evidence"}
        assert specs["reset_password"].reversible is False and "NOT REVERSIBLE" in specs["reset_password"].description
        assert specs["capture_evidence"].mutating is False
        assert {s.target_kind for s in specs.values()} == {"account"}

    @pytest.mark.parametrize("action", sorted(ad.ACTIONS))
    def test_preview_needs_no_connection(self, action):
        """preview describes the change without connecting (no pool connection is opened)."""
        conn = ad.ActiveDirectoryConnector()
        lines = conn.preview(target(), action, {"account": "alice"}, ConnectorContext())
        assert lines and all("alice" in lines[0] for _ in [0]) and conn.pool.opened == 0

    def test_protected_names_refused_in_validate(self):
        """Administrator, krbtgt and listed accounts are refused before any connection."""
        conn = ad.ActiveDirectoryConnector()
        for name in ("Administrator", "krbtgt", "krbtgt_12345", "breakglass@lab.test"):
            with pytest.raises(InvalidInput, match="protected"):
                conn.validate(target(protected_accounts=["breakglass"]), "disable_account", {"account": name})

    def test_unknown_action(self):
        """An unknown action names the known ones."""
        with pytest.raises(InvalidInput, match="disable_account"):
            ad.ActiveDirectoryConnector().validate(target(), "format_c", {"account": "x"})

    def test_exports(self):
        """The package exports exactly what __all__ lists."""
        assert all(hasattr(ad, name) for name in ad.__all__)
        assert "ActiveDirectoryConnector" in ad.__all__
