"""`agent disable-account` / `enable-account` against the lab's real Samba AD DC, as a responder runs them."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.lab import Lab
from agent.lab.ad import DEMO_PASSWORD, DEMO_USER
from tests.integration.cli.test_contain_cli import agent

pytestmark = [pytest.mark.root, pytest.mark.samba]


@pytest.fixture
def ad_lab(clean_lab: Lab) -> Iterator[Lab]:
    clean_lab.up_ad()
    try:
        yield clean_lab
    finally:
        clean_lab.down_ad()
        clean_lab.write_config()


@pytest.fixture
def ad_cfg(ad_lab: Lab, tmp_path: Path) -> Path:
    src = ad_lab.config_dir
    state = str(ad_lab.state_dir)
    (tmp_path / "inventory.yaml").write_text((src / "inventory.yaml").read_text())
    text = (src / "agent.yaml").read_text()
    for old, new in ((f'"{state}/agent.db"', f'"{tmp_path}/agent.db"'), (f'"{state}/audit"', f'"{tmp_path}/audit"'),
                     (f'"{state}/evidence"', f'"{tmp_path}/evidence"'),
                     (f'"{src}/inventory.yaml"', f'"{tmp_path}/inventory.yaml"')):
        text = text.replace(old, new)
    (tmp_path / "agent.yaml").write_text(text)
    return tmp_path / "agent.yaml"


def user_can_bind(lab: Lab) -> bool | str:
    from ldap3 import Connection, Server, Tls
    from ldap3.core.exceptions import LDAPException
    tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(lab.state_dir / "dc" / "tls" / "ca.pem"))
    with lab.enter("mgmt"):
        server = Server("10.77.0.50", port=636, use_ssl=True, tls=tls, get_info=None, connect_timeout=5)
        try:
            Connection(server, user=f"{DEMO_USER}@lab.test", password=DEMO_PASSWORD, auto_bind=True).unbind()
            return True
        except LDAPException as exc:
            return f"bind refused: {exc}"


class TestDisableAccount:
    def test_disable_enable_round_trip(self, ad_lab: Lab, ad_cfg: Path):
        """Disabling locks the user's own LDAPS bind out; enable-account restores it from the journal."""
        assert user_can_bind(ad_lab) is True
        res = agent(ad_lab, ad_cfg, "disable-account", DEMO_USER, "--with-groups", "--reason", "phish", "--yes",
                    "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        steps = {o["step"]: o for o in json.loads(res.stdout)["outcomes"]}
        assert steps["disable"]["changed"] and steps["groups"]["changed"]
        assert any("Kerberos" in w for w in steps["disable"]["warnings"])
        assert user_can_bind(ad_lab) is not True
        res = agent(ad_lab, ad_cfg, "enable-account", DEMO_USER, "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert user_can_bind(ad_lab) is True
        assert json.loads(agent(ad_lab, ad_cfg, "status", "--json").stdout)["active"] == []

    def test_protected_and_malformed_accounts_refused(self, ad_lab: Lab, ad_cfg: Path):
        """A protected account and an LDAP-filter injection are refused before anything is sent."""
        res = agent(ad_lab, ad_cfg, "disable-account", "breakglass", "--yes")
        assert res.returncode == 3 and "protected" in res.stderr
        res = agent(ad_lab, ad_cfg, "disable-account", "*)(objectClass=*", "--yes")
        assert res.returncode == 2 and "user" in res.stderr
        assert user_can_bind(ad_lab) is True

    def test_several_users_are_refused_together(self, ad_lab: Lab, ad_cfg: Path):
        """`disable-account jdoe breakglass`: one protected name refuses the whole command; jdoe is untouched."""
        res = agent(ad_lab, ad_cfg, "disable-account", DEMO_USER, "breakglass", "--yes")
        assert res.returncode == 3 and "breakglass" in res.stderr and "protected" in res.stderr
        assert user_can_bind(ad_lab) is True
        res = agent(ad_lab, ad_cfg, "disable-account", DEMO_USER, "other.user", "--dry-run", "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        planned = [a for a in json.loads(res.stdout)["plan"]["actions"] if a["action"] == "disable_account"]
        assert len(planned) == 1, planned  # one batched action on the directory, one item per account
        assert sorted(i["requested"] for i in planned[0]["items"]) == sorted([DEMO_USER, "other.user"]), planned


class TestSeveralAccounts:
    def test_missing_account_is_named_and_partial(self, ad_lab: Lab, ad_cfg: Path):
        """`disable-account jdoe ghost`: one batched action; jdoe is disabled, ghost is named as not found,
        exit 4 (partial), and the incident is not reported as contained."""
        res = agent(ad_lab, ad_cfg, "disable-account", DEMO_USER, "nosuchuser77", "--reason", "spray", "--yes")
        assert res.returncode == 4, res.stderr + res.stdout
        assert "nosuchuser77" in res.stdout and "not found" in res.stdout
        assert user_can_bind(ad_lab) is not True
        incidents = json.loads(agent(ad_lab, ad_cfg, "incidents", "list", "--json").stdout)
        assert [i["status"] for i in incidents] == ["partial"], incidents
        res = agent(ad_lab, ad_cfg, "enable-account", DEMO_USER, "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert user_can_bind(ad_lab) is True
