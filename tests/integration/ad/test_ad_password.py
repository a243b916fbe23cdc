"""reset_password against a real Samba AD DC: the new password is set and never leaks anywhere."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from ldap3.utils.log import EXTENDED, OFF, set_library_log_activation_level, set_library_log_detail_level
from structlog.testing import capture_logs

from connectors.active_directory import password as password_module
from connectors.errors import ConnectorError, InvalidInput, Rejected
from connectors.types import Credentials, Secret

from .helpers import CTX, run_apply, user_bind

pytestmark = [pytest.mark.samba, pytest.mark.root]


@pytest.fixture
def spy(monkeypatch):
    """Record every generated password (the test must know it to prove it never leaks)."""
    seen: list[str] = []
    real = password_module.generate_password

    def recording(avoid: str = "") -> str:
        value = real(avoid)
        seen.append(value)
        return value

    monkeypatch.setattr(password_module, "generate_password", recording)
    return seen


@pytest.fixture
def ldap3_logging(caplog):
    """Turn ldap3's own library logging on at its most verbose level, captured by caplog."""
    caplog.set_level(logging.DEBUG)
    set_library_log_detail_level(EXTENDED)
    set_library_log_activation_level(logging.DEBUG)
    yield caplog
    set_library_log_activation_level(OFF)


class TestResetPassword:
    def test_new_password_is_set_and_must_be_changed(self, samba_dc, connector, dc_target, agent_creds, make_user,
                                                     spy):
        """A new random password is in force (its bind says 'must change', data 773) and pwdLastSet is 0."""
        name, old = make_user()
        kvno = int(samba_dc.read(name, ["msDS-KeyVersionNumber"])["msDS-KeyVersionNumber"][0])
        _snap, result, check = run_apply(connector, dc_target, agent_creds, "reset_password", {"account": name})
        assert result.changed and check.in_effect and check.observed["pwdLastSet"] == 0
        assert len(spy) == 1 and len(spy[0]) == 32
        assert int(samba_dc.read(name, ["msDS-KeyVersionNumber"])["msDS-KeyVersionNumber"][0]) > kvno
        ok, message = user_bind(samba_dc, f"{name}@lab.test", spy[0])
        assert not ok and "data 773" in message
        ok, message = user_bind(samba_dc, f"{name}@lab.test", "Not-The-Password-1!")
        assert not ok and "data 52e" in message
        assert not user_bind(samba_dc, f"{name}@lab.test", old)[0]  # measured here: data 52e over LDAP
        assert "old password" in result.details["note"] and result.details["reversible"] is False

    def test_password_never_appears_in_results_snapshots_logs_or_errors(self, samba_dc, connector, dc_target,
                                                                        agent_creds, make_user, spy,
                                                                        ldap3_logging):
        """The generated password is absent from snapshot, result, verification, captured logs and an error."""
        name, _ = make_user()
        with capture_logs() as structured:
            snap, result, check = run_apply(connector, dc_target, agent_creds, "reset_password", {"account": name})
            victim, victim_pw = make_user()
            # an unprivileged bind account: the reset is refused by the server, after the password was generated
            weak = Credentials(username=f"{victim}@lab.test", password=Secret(victim_pw))
            with pytest.raises(Rejected) as refused:
                run_apply(connector, dc_target, weak, "reset_password", {"account": name})
        assert len(spy) == 2
        exc = refused.value
        blobs = [json.dumps(snap.to_dict()), json.dumps(result.to_dict()), json.dumps(check.to_dict()),
                 ldap3_logging.text, repr(structured), str(exc), repr(exc.detail),
                 "".join(traceback.format_exception(exc))]
        assert "PROTOCOL:MODIFY" in ldap3_logging.text  # ldap3 logging was really on for the pwdLastSet modify
        for secret in spy:
            encoded = f'"{secret}"'.encode("utf-16-le")
            forms = [secret, encoded.decode("latin-1"), repr(encoded)[2:-1], encoded.hex(), secret[:12]]
            for blob in blobs:
                for form in forms:
                    assert form not in blob

    def test_reset_is_declared_irreversible_and_has_no_undo(self, samba_dc, connector, dc_target, agent_creds,
                                                             make_user):
        """ActionSpec says reversible=False; asking for an undo is refused before anything is sent."""
        name, _ = make_user()
        assert connector.actions["reset_password"].reversible is False
        snap, _result, _check = run_apply(connector, dc_target, agent_creds, "reset_password", {"account": name})
        with connector.open(dc_target, agent_creds, CTX) as session:
            with pytest.raises(InvalidInput):
                connector.undo(session, "reset_password", {"account": name}, snap)
            assert session.modifies == 0

    def test_repeating_the_reset_sets_another_password(self, samba_dc, connector, dc_target, agent_creds,
                                                       make_user, spy):
        """A re-run is safe: it sets another random password (never skips: a known password must not survive)."""
        name, _ = make_user()
        run_apply(connector, dc_target, agent_creds, "reset_password", {"account": name})
        _, again, check = run_apply(connector, dc_target, agent_creds, "reset_password", {"account": name})
        assert again.changed and check.in_effect and spy[0] != spy[1]
        assert isinstance(again, object) and not isinstance(again, ConnectorError)
