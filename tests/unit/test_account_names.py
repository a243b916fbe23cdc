"""Account names: one grammar for the CLI, the daemon's intake and the AD connector (issue 17, findings 1-3).

Escape, don't forbid: everything Active Directory accepts as a sAMAccountName or UPN must pass, in every form a
responder types (UPN, ``DOMAIN\\name``, DN, SID, GUID); only what cannot be a name is refused — and the three
entry points must agree on every value.
"""

from __future__ import annotations

import pytest

from agent.errors import InputError
from agent.intake.model import checked
from agent.validate import username
from connectors.account_names import parse_account_name
from connectors.active_directory.accounts import check_by_name, name_filter, validate_account
from connectors.active_directory.options import DirectoryOptions
from connectors.errors import InvalidInput
from connectors.types import Target

BASE = "DC=lab,DC=test"
OPTS = DirectoryOptions.from_target(Target(name="ad", kind="account", address="10.0.0.5",
                                           connector="active_directory",
                                           options={"base_dn": BASE, "netbios_domain": "LAB"}))

ACCEPTED = {
    "o'brien": "name", "a(b)c": "name", "ünïcode": "name", "jdoe": "name", "j.doe-1_x": "name",
    "O'Brien@lab.test": "name", "bob@corp@x": "name", "name with space": "name", "x&y!%#": "name",
    "LAB\\o'brien": "downlevel", "lab\\a(b)c": "downlevel",
    f"CN=O'Brien\\, Pat,CN=Users,{BASE}": "dn", f"CN=a(b)c,CN=Users,{BASE}": "dn",
    f"CN=x\\2Cy,OU=Staff,{BASE}": "dn",
    "S-1-5-21-1004336348-1177238915-682003330-1105": "sid",
    "0f2c1b1e-4d2a-4c8b-9a53-1e6f0d9c7a11": "guid", "{0F2C1B1E-4D2A-4C8B-9A53-1E6F0D9C7A11}": "guid",
}
REFUSED = ["", "*)(objectClass=*", "a*b", 'a"b', "a/b", "a[b]", "a:b", "a;b", "a|b", "a+b", "a?b", "a<b>",
           "a\nb", "a\x00b", "a\u200bb", " lead", "trail ", "...", ". .", "x" * 257, "LAB\\", "\\name",
           "TOOLONGNETBIOSNAME\\x", "LA:B\\x", "LAB\\a*b", "CN=a,b", "CN=x;y,DC=lab,DC=test", "CN=\\zz,DC=lab"]


@pytest.mark.parametrize("value,kind", ACCEPTED.items())
def test_real_names_are_accepted_everywhere(value, kind):
    """The CLI (plan), the daemon (intake) and the connector accept every form AD accepts."""
    assert parse_account_name(value).kind == kind
    assert username(value) == value
    assert checked("wazuh", None, 50, "victim", value, None).user == value
    assert validate_account(value, OPTS) == value


@pytest.mark.parametrize("value", REFUSED)
def test_what_cannot_be_a_name_is_refused_everywhere(value):
    with pytest.raises(InputError, match="user"):
        username(value)
    if value:  # an alert without a user is fine; one with a bad user is malformed
        with pytest.raises(ValueError, match="user"):
            checked("wazuh", None, 50, "victim", value, None)
    with pytest.raises(InvalidInput, match="account"):
        validate_account(value, OPTS)


def test_refusal_names_the_forbidden_characters():
    with pytest.raises(InputError, match=r"does not allow .*\* \?"):
        username("a*b?c")


def test_filters_escape_every_special_character():
    """RFC 4515: ( ) * \\ NUL are escaped, so o'brien and a(b)c are plain values, never filter syntax."""
    filt = name_filter(["a(b)c", "o'brien", "LAB\\x(y)"])
    assert "(sAMAccountName=a\\28b\\29c)" in filt and "(sAMAccountName=o'brien)" in filt
    assert "(sAMAccountName=x\\28y\\29)" in filt and "LAB" not in filt


def test_sid_and_guid_filters_are_binary_escaped():
    filt = name_filter(["S-1-5-21-1-2-3-1105", "0f2c1b1e-4d2a-4c8b-9a53-1e6f0d9c7a11"])
    assert "(objectSid=\\01\\05\\00\\00\\00\\00\\00\\05\\15\\00\\00\\00" in filt
    assert "(objectGUID=\\1e\\1b\\2c\\0f" in filt


def test_foreign_netbios_domain_is_refused_before_connecting():
    with pytest.raises(InvalidInput, match="not this directory's NetBIOS domain 'LAB'"):
        validate_account("OTHER\\jdoe", OPTS)


@pytest.mark.parametrize("value", ["krbtgt", "krbtgt_12345", "LAB\\krbtgt_9", "KRBTGT_1@lab.test", "administrator",
                                   "LAB\\Administrator", "S-1-5-21-1-2-3-500", "S-1-5-21-1-2-3-502"])
def test_builtin_protected_accounts_in_every_form(value):
    with pytest.raises(InvalidInput, match="protected") as info:
        check_by_name(value, OPTS)
    assert info.value.detail["reason"] == "protected_account"
