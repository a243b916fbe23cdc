"""Real account names and every input form, end to end on a real Samba AD DC (issue 17, findings 1-3).

Users are created with ``samba-tool user create`` — the DC's own tool decides what a valid name is — and then
contained by the connector and by the ``agent`` CLI run as a responder would, from the client namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from agent.lab.samba import SambaDC
from connectors.active_directory.accounts import sid_to_str
from connectors.errors import InvalidInput, Rejected

from .helpers import AGENT_PASSWORD, CTX, run_apply, run_undo, target_for, uac

pytestmark = [pytest.mark.samba, pytest.mark.root]

REPO = Path(__file__).resolve().parents[3]
AGENT = str(REPO / ".venv" / "bin" / "agent")
REAL_NAMES = ["o'brien", "a(b)c", "ünïcode"]


def _samba_user(dc: SambaDC, name: str) -> str:
    """Create ``name`` with samba-tool (unique per run) and return it; the password is known to the test."""
    dc.samba_tool("user", "create", name, f"Pw-{uuid.uuid4().hex[:8]}-9a!")
    return name


def _fresh(base: str) -> str:
    return f"{base}{os.getpid() % 1000}{uuid.uuid4().hex[:3]}"[:20]


@pytest.fixture
def real_users(samba_dc: SambaDC) -> list[str]:
    """o'brien, a(b)c and ünïcode — made unique with a suffix, keeping the characters that matter."""
    names = [_samba_user(samba_dc, _fresh(n)) for n in REAL_NAMES]
    yield names
    for name in names:
        samba_dc.samba_tool("user", "delete", name)


def _ids(dc: SambaDC, name: str) -> tuple[str, str]:
    """(objectSid, objectGUID) as text, however ldap3 decoded them."""
    attrs = dc.read(name, ["objectSid", "objectGUID"])
    sid, guid = attrs["objectSid"][0], attrs["objectGUID"][0]
    sid = sid if isinstance(sid, str) else sid_to_str(sid)
    guid = str(uuid.UUID(guid)) if isinstance(guid, str) else str(uuid.UUID(bytes_le=guid))
    return sid, guid


def _disabled(dc: SambaDC, name: str) -> bool:
    return bool(uac(dc, dc.dn_of(name)) & 0x2)


class TestConnectorForms:
    def test_real_names_disable_and_restore(self, samba_dc, connector, dc_target, agent_creds, real_users):
        for name in real_users:
            args = {"account": name}
            snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", args)
            assert result.changed and check.in_effect, name
            assert _disabled(samba_dc, name)
            run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
            assert not _disabled(samba_dc, name)

    @pytest.mark.parametrize("form", ["upn", "downlevel", "dn", "sid", "guid"])
    def test_every_input_form_names_the_same_account(self, samba_dc, connector, dc_target, agent_creds,
                                                     real_users, form):
        name = real_users[0]  # o'brien…: a quote in every form, escaped DN included
        sid, guid = _ids(samba_dc, name)
        value = {"upn": f"{name}@lab.test", "downlevel": f"LAB\\{name}", "dn": samba_dc.dn_of(name),
                 "sid": sid, "guid": guid}[form]
        snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", {"account": value})
        assert result.changed and check.in_effect and _disabled(samba_dc, name), value
        assert snap.data["account"]["sAMAccountName"] == name
        run_undo(connector, dc_target, agent_creds, "disable_account", {"account": value}, snap)

    def test_batch_mixes_forms(self, samba_dc, connector, dc_target, agent_creds, real_users):
        sid = _ids(samba_dc, real_users[2])[0]
        args = {"accounts": [real_users[0], f"LAB\\{real_users[1]}", sid]}
        snap, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", args)
        assert check.in_effect and all(_disabled(samba_dc, n) for n in real_users), result.details
        run_undo(connector, dc_target, agent_creds, "disable_account", args, snap)
        assert not any(_disabled(samba_dc, n) for n in real_users)

    def test_foreign_domain_is_refused_unresolved(self, samba_dc, connector, dc_target, agent_creds, real_users):
        """Without options.netbios_domain the DC's crossRef says LAB; OTHER\\name is never searched."""
        connector.validate(dc_target, "disable_account", {"account": f"OTHER\\{real_users[0]}"})
        with connector.open(dc_target, agent_creds, CTX) as session, pytest.raises(Rejected, match="'LAB'"):
            connector.snapshot(session, "disable_account", {"account": f"OTHER\\{real_users[0]}"})
        assert not _disabled(samba_dc, real_users[0])
        with pytest.raises(InvalidInput, match="NetBIOS domain 'LAB'"):
            connector.validate(target_for(samba_dc, netbios_domain="LAB"), "disable_account",
                               {"account": "OTHER\\x"})


# ----- the CLI, as a responder runs it ------------------------------------------------------------------------
@pytest.fixture
def cli(samba_env, tmp_path: Path):
    """Run ``agent`` from the DC's client namespace with an inventory naming this DC (``dc_address`` swappable)."""
    dc = samba_env.dc
    pw = tmp_path / "bind-password"
    pw.write_text(AGENT_PASSWORD)
    pw.chmod(0o600)

    def run(*args: str, dc_address: str | None = None) -> subprocess.CompletedProcess[str]:
        inv = {"management": {"addresses": [samba_env.client_address]},
               "protected": {"accounts": ["breakglass"]},
               "directories": {"lab-ad": {"address": dc_address or dc.address,
                                          "options": {"base_dn": dc.base_dn, "server_name": dc.server_name,
                                                      "ca_file": str(dc.ca_file), "port": 636},
                                          "credentials": {"username": "ir-agent@lab.test",
                                                          "password": f"file:{pw}"}}}}
        (tmp_path / "inventory.yaml").write_text(json.dumps(inv))
        (tmp_path / "agent.yaml").write_text(json.dumps({
            "inventory": str(tmp_path / "inventory.yaml"), "runbooks": str(REPO / "agent" / "data" / "runbooks"),
            "database": str(tmp_path / "agent.db"), "audit_dir": str(tmp_path / "audit"),
            "evidence_dir": str(tmp_path / "evidence"), "audit_signing_key": str(tmp_path / "audit.key"),
            "ssh": {"connect_timeout": 2, "command_timeout": 10},
            "engine": {"retries": 1, "backoff": 0.1}}))
        env = {**os.environ, "AGENT_CONFIG": str(tmp_path / "agent.yaml"), "NO_COLOR": "1", "COLUMNS": "200"}
        return subprocess.run(["ip", "netns", "exec", samba_env.client_ns, AGENT, *args], capture_output=True,
                              text=True, timeout=90, env=env, stdin=subprocess.DEVNULL, check=False)
    return run


class TestCli:
    def test_real_names_end_to_end(self, samba_dc, cli, real_users):
        """`agent disable-account "o'brien…" "a(b)c…" "ünïcode…"` disables all three; enable-account undoes it."""
        res = cli("disable-account", *real_users, "--reason", "spray", "--yes", "--json")
        assert res.returncode == 0, res.stderr + res.stdout
        assert all(_disabled(samba_dc, n) for n in real_users)
        res = cli("enable-account", *real_users, "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert not any(_disabled(samba_dc, n) for n in real_users)

    @pytest.mark.parametrize("form", ["downlevel", "dn"])
    def test_downlevel_and_dn_from_the_cli(self, samba_dc, cli, real_users, form):
        name = real_users[1]
        value = f"LAB\\{name}" if form == "downlevel" else samba_dc.dn_of(name)
        res = cli("disable-account", value, "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert _disabled(samba_dc, name)
        assert cli("enable-account", value, "--yes").returncode == 0
        assert not _disabled(samba_dc, name)

    @pytest.mark.parametrize("account", ["ir-agent", "ir-agent@lab.test", "LAB\\ir-agent", "krbtgt_4711",
                                         "breakglass"])
    def test_protected_refused_before_connecting(self, cli, account):
        """The bind account and RODC krbtgt_* are guards (exit 3) and refused before any connection: the
        inventory points at an address nobody answers on, so connecting would fail differently."""
        res = cli("disable-account", account, "--yes", dc_address="10.79.250.250")
        assert res.returncode == 3, res.stderr + res.stdout
        assert "protected" in res.stderr or "bind account" in res.stderr, res.stderr


class TestIrreversibleInStatus:
    def test_reset_password_is_permanent_not_until_released(self, samba_dc, cli, real_users):
        """Finding 4: a password reset is listed as permanent (never "until released"), enable-account says it
        was not undone, and afterwards the status no longer shows it."""
        name = real_users[0]
        res = cli("disable-account", name, "--reset-password", "--reason", "spray", "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        status = json.loads(cli("status", "--json").stdout)
        assert [a["action"] for a in status["irreversible"]] == ["reset_password"]
        assert "reset_password" not in [a["action"] for a in status["active"]]
        text = cli("status").stdout
        reset_row = next(line for line in text.splitlines() if "reset_password" in line)
        assert "permanent" in reset_row and "until released" not in reset_row
        res = cli("enable-account", name, "--yes")
        assert res.returncode == 0, res.stderr + res.stdout
        assert "password reset" in res.stdout and "NOT undone" in res.stdout
        status = json.loads(cli("status", "--json").stdout)
        assert status["active"] == [] and status["irreversible"] == []
        assert not _disabled(samba_dc, name)
