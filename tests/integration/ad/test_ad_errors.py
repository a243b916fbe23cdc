"""Failure modes against the real DC: each gives one clear connector error, classified transient or permanent."""

from __future__ import annotations

import socket
import subprocess
import time

import ldap3
import pytest

from agent.lab import netns
from agent.lab.samba import generate_ca
from connectors.active_directory.errors import from_result
from connectors.errors import AuthError, Rejected, Timeout, TLSError, Unreachable
from connectors.types import ConnectorContext, Credentials, Secret

from .helpers import AGENT_PASSWORD, CTX, run_apply, target_for, user_bind

pytestmark = [pytest.mark.samba, pytest.mark.root]


def _open(connector, target, creds, ctx=CTX):
    with connector.open(target, creds, ctx) as session:
        return session


class TestTLS:
    def test_untrusted_ca_is_refused(self, samba_dc, connector, agent_creds, tmp_path):
        """A CA that did not sign the DC's certificate: TLSError, permanent, naming the verification failure."""
        other = tmp_path / "other-ca.pem"
        other.write_bytes(generate_ca("Some other CA")[0])
        with pytest.raises(TLSError, match="certificate not accepted") as caught:
            _open(connector, target_for(samba_dc, ca_file=str(other)), agent_creds)
        assert not caught.value.transient

    def test_wrong_server_name_is_refused_even_though_the_cert_names_the_address(self, samba_dc, connector,
                                                                                 agent_creds):
        """The certificate lists the DC's IP; expecting dc2.lab.test must still fail (ldap3 alone would pass)."""
        with pytest.raises(TLSError, match="certificate not accepted"):
            _open(connector, target_for(samba_dc, server_name="dc2.lab.test"), agent_creds)

    def test_system_trust_store_does_not_trust_the_lab_ca(self, samba_dc, connector, agent_creds):
        """Without ca_file the system store is used, and it rightly refuses the lab's private CA."""
        with pytest.raises(TLSError):
            _open(connector, target_for(samba_dc, ca_file=None), agent_creds)

    def test_missing_ca_file_is_a_clear_tls_error(self, samba_dc, connector, agent_creds, tmp_path):
        """A ca_file path that does not exist is named in the error."""
        with pytest.raises(TLSError, match="does not exist"):
            _open(connector, target_for(samba_dc, ca_file=str(tmp_path / "nope.pem")), agent_creds)

    def test_options_that_would_disable_tls_are_refused_before_connecting(self, samba_dc, connector):
        """tls: false / validate: false never connect: TLSError from validate."""
        for option in ({"tls": False}, {"validate": False}, {"use_ssl": False}):
            with pytest.raises(TLSError, match="refused"):
                connector.validate(target_for(samba_dc, **option), "disable_account", {"account": "x"})
        assert connector.pool.opened == 0

    def test_ldaps_against_the_plain_ldap_port_fails_as_tls(self, samba_dc, connector, agent_creds):
        """LDAPS spoken to port 389 is a TLS failure with a hint, not a silent plain connection."""
        with pytest.raises(TLSError, match="starttls"):
            _open(connector, target_for(samba_dc, port=389), agent_creds)

    def test_plain_simple_bind_is_refused_by_the_dc_and_maps_to_tls_error(self, samba_dc):
        """The server's own answer to a plain simple bind (strongerAuthRequired) maps to TLSError."""
        server = ldap3.Server(samba_dc.address, port=389, get_info=ldap3.NONE, connect_timeout=3)
        conn = ldap3.Connection(server, "ir-agent@lab.test", AGENT_PASSWORD)
        try:
            assert not conn.bind()
            error = from_result(conn.result, "bind")
        finally:
            conn.unbind()
        assert isinstance(error, TLSError) and "strongerAuthRequired" in str(error)

    def test_starttls_on_389_works(self, samba_dc, connector, agent_creds, make_user):
        """starttls: true upgrades port 389 and the action runs over it."""
        name, _ = make_user()
        target = target_for(samba_dc, starttls=True, port=None)
        _, result, check = run_apply(connector, target, agent_creds, "expire_sessions", {"account": name})
        assert result.changed and check.in_effect


class TestAuthAndRights:
    def test_bad_bind_password(self, samba_dc, connector, dc_target):
        """Wrong password: AuthError, permanent, reason decoded, password not in the message."""
        creds = Credentials("ir-agent@lab.test", Secret("Wrong-Secret-123"))
        with pytest.raises(AuthError, match="invalid credentials") as caught:
            _open(connector, dc_target, creds)
        assert not caught.value.transient and "Wrong-Secret-123" not in str(caught.value)
        assert "52e" in str(caught.value)

    def test_empty_password_is_not_an_anonymous_bind(self, samba_dc, connector, dc_target):
        """An empty password is refused locally (LDAP would treat it as an unauthenticated bind)."""
        with pytest.raises(AuthError, match="anonymous"):
            _open(connector, dc_target, Credentials("ir-agent@lab.test", Secret("")))

    def test_insufficient_rights_is_rejected(self, samba_dc, connector, dc_target, make_user):
        """A bind account without rights: the modify is refused by the DC → Rejected (permanent)."""
        weak, weak_pw = make_user("weak")
        victim, _ = make_user()
        creds = Credentials(f"{weak}@lab.test", Secret(weak_pw))
        with pytest.raises(Rejected, match="insufficient access rights") as caught:
            run_apply(connector, dc_target, creds, "disable_account", {"account": victim})
        assert not caught.value.transient


class TestReachability:
    def test_closed_port_is_unreachable_and_transient(self, samba_dc, connector, agent_creds):
        """Connection refused: Unreachable, transient (the engine may retry)."""
        with pytest.raises(Unreachable) as caught:
            _open(connector, target_for(samba_dc, port=1636), agent_creds)
        assert caught.value.transient and not isinstance(caught.value, Timeout)

    def test_silent_server_is_a_timeout(self, samba_dc, samba_env, connector, agent_creds):
        """A peer that accepts TCP but never answers the TLS handshake: Timeout (transient)."""
        listener = socket.socket()
        listener.bind((samba_env.client_address, 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        target = target_for(samba_dc, port=port)
        target = type(target)(**{**target.__dict__, "address": samba_env.client_address})
        started = time.monotonic()
        try:
            with pytest.raises(Timeout) as caught:
                _open(connector, target, agent_creds, ConnectorContext(connect_timeout=1.0, command_timeout=1.0))
        finally:
            listener.close()
        assert caught.value.transient and time.monotonic() - started < 5

    def test_dc_stopped_mid_run_then_back(self, samba_dc, samba_env, connector, dc_target, agent_creds,
                                          make_user):
        """A pooled session whose DC died: Unreachable (transient); after restart the connector recovers.

        Also proves stop() kills only the DC's own processes: an unrelated process in its namespace survives.
        """
        name, password = make_user()
        bystander = subprocess.Popen(["ip", "netns", "exec", samba_dc.namespace, "sleep", "60"],
                                     env={"PATH": netns.SBIN_PATH})
        try:
            _open(connector, dc_target, agent_creds)  # pooled, bound
            samba_dc.stop()
            assert bystander.poll() is None
            with pytest.raises(Unreachable) as caught:
                run_apply(connector, dc_target, agent_creds, "disable_account", {"account": name})
            assert caught.value.transient
            with pytest.raises(Unreachable):  # the broken connection was discarded; a new one is refused
                _open(connector, dc_target, agent_creds)
        finally:
            bystander.kill()
            bystander.wait()
            samba_dc.start()
        _, result, check = run_apply(connector, dc_target, agent_creds, "disable_account", {"account": name})
        assert result.changed and check.in_effect
        assert not user_bind(samba_dc, f"{name}@lab.test", password)[0]
