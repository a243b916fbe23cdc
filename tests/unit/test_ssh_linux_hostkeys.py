"""Host-key pinning and authentication of ssh_linux against a real in-process SSH server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.errors import AuthError, HostKeyError, Timeout
from connectors.ssh_linux import open_session
from connectors.ssh_linux.hostkeys import fingerprint
from connectors.types import ConnectorContext, Credentials, Secret, Target
from tests.unit.ssh_linux_double import SshDouble, new_key, write_key


@pytest.fixture
def srv() -> Iterator[SshDouble]:
    with SshDouble() as server:
        yield server


@pytest.fixture
def creds(srv: SshDouble, tmp_path: Path) -> Credentials:
    return Credentials("root", private_key_path=write_key(srv.client_key, tmp_path / "id"))


def _target(srv: SshDouble, host_key: str | None = None) -> Target:
    return Target("dbl", "host", "127.0.0.1", "ssh_linux", port=srv.port, host_key=host_key)


def _ctx(known_hosts: Path | None, trust: bool = False) -> ConnectorContext:
    return ConnectorContext(known_hosts=str(known_hosts) if known_hosts else None, trust_unknown_host_key=trust,
                            connect_timeout=3, command_timeout=3)


class TestHostKeyPolicy:
    def test_known_key_by_bracketed_port_accepted(self, srv: SshDouble, creds: Credentials, tmp_path: Path) -> None:
        """A key pinned in known_hosts as [ip]:port is accepted and a command runs."""
        kh = tmp_path / "known_hosts"
        kh.write_text(srv.known_hosts_line)
        with open_session(_target(srv), creds, _ctx(kh)) as s:
            rc, out, err = s.run("echo hi", input="data")
        assert (rc, out, err) == (3, "out:echo hi|in:data", "err")

    def test_inventory_pin_accepted_without_known_hosts(self, srv: SshDouble, creds: Credentials) -> None:
        """The inventory's host_key string alone is enough to trust the host."""
        with open_session(_target(srv, srv.pin), creds, _ctx(None)) as s:
            assert s.host_fingerprint == fingerprint(srv.host_key.asbytes())

    def test_unknown_key_refused_with_fingerprint(self, srv: SshDouble, creds: Credentials, tmp_path: Path) -> None:
        """No pin anywhere: refused, naming the host, the offered SHA256 fingerprint and what was expected."""
        kh = tmp_path / "known_hosts"
        kh.write_text("")
        with pytest.raises(HostKeyError) as err:
            open_session(_target(srv), creds, _ctx(kh))
        text = str(err.value)
        assert f"[127.0.0.1]:{srv.port}" in text and fingerprint(srv.host_key.asbytes()) in text
        assert "unknown" in text and "expected" in text
        assert srv.commands == []

    def test_changed_key_refused_even_when_trusting(self, srv: SshDouble, creds: Credentials,
                                                   tmp_path: Path) -> None:
        """A key differing from the pin is 'changed' and refused although trust_unknown_host_key is set."""
        other = new_key()
        kh = tmp_path / "known_hosts"
        kh.write_text(f"[127.0.0.1]:{srv.port} {other.get_name()} {other.get_base64()}\n")
        with pytest.raises(HostKeyError) as err:
            open_session(_target(srv), creds, _ctx(kh, trust=True))
        assert "CHANGED" in str(err.value) and fingerprint(other.asbytes()) in str(err.value)
        assert kh.read_text().count("\n") == 1

    def test_changed_inventory_pin_refused(self, srv: SshDouble, creds: Credentials) -> None:
        """A wrong inventory pin refuses the host too."""
        other = new_key()
        with pytest.raises(HostKeyError, match="CHANGED"):
            open_session(_target(srv, f"{other.get_name()} {other.get_base64()}"), creds, _ctx(None))

    def test_trusted_unknown_key_is_recorded(self, srv: SshDouble, creds: Credentials, tmp_path: Path) -> None:
        """With explicit trust, a first-contact key is accepted and appended, so the next connect is pinned."""
        kh = tmp_path / "known_hosts"
        with open_session(_target(srv), creds, _ctx(kh, trust=True)) as s:
            assert s.trusted_new_key
        assert kh.read_text() == srv.known_hosts_line
        with open_session(_target(srv), creds, _ctx(kh)) as s:
            assert not s.trusted_new_key

    def test_key_for_other_port_does_not_match(self, srv: SshDouble, creds: Credentials, tmp_path: Path) -> None:
        """An entry for the bare IP (port 22) does not pin a server on another port."""
        kh = tmp_path / "known_hosts"
        kh.write_text(f"127.0.0.1 {srv.host_key.get_name()} {srv.host_key.get_base64()}\n")
        with pytest.raises(HostKeyError, match="unknown"):
            open_session(_target(srv), creds, _ctx(kh))

    def test_malformed_pin_refused(self, srv: SshDouble, creds: Credentials) -> None:
        """A garbled inventory pin is a host-key error, not a crash."""
        with pytest.raises(HostKeyError, match="base64|type"):
            open_session(_target(srv, "ssh-ed25519 not*base64"), creds, _ctx(None))


class TestAuthentication:
    def test_password_auth(self, srv: SshDouble) -> None:
        """Password credentials work when no key is configured."""
        with open_session(_target(srv, srv.pin), Credentials("root", password=Secret("right")), _ctx(None)) as s:
            assert s.run("true")[0] == 3

    def test_wrong_password_is_auth_error_without_secret(self, srv: SshDouble) -> None:
        """A rejected password maps to AuthError and the message does not contain it."""
        with pytest.raises(AuthError) as err:
            open_session(_target(srv, srv.pin), Credentials("root", password=Secret("hunter2-wrong")), _ctx(None))
        assert "hunter2" not in str(err.value)

    def test_wrong_key_is_auth_error(self, srv: SshDouble, tmp_path: Path) -> None:
        """A key the server does not know maps to AuthError."""
        creds = Credentials("root", private_key_path=write_key(new_key(), tmp_path / "other"))
        with pytest.raises(AuthError):
            open_session(_target(srv, srv.pin), creds, _ctx(None))

    def test_encrypted_key_without_passphrase(self, srv: SshDouble, tmp_path: Path) -> None:
        """An encrypted private key with no passphrase configured is an AuthError naming the cause."""
        path = write_key(srv.client_key, tmp_path / "enc", passphrase="pw")
        with pytest.raises(AuthError, match="passphrase|encrypted"):
            open_session(_target(srv, srv.pin), Credentials("root", private_key_path=path), _ctx(None))
        ok = Credentials("root", private_key_path=path, private_key_passphrase=Secret("pw"))
        with open_session(_target(srv, srv.pin), ok, _ctx(None)):
            pass

    def test_missing_key_file(self, srv: SshDouble, tmp_path: Path) -> None:
        """A missing key file is an AuthError, not FileNotFoundError."""
        with pytest.raises(AuthError, match="not found"):
            open_session(_target(srv, srv.pin), Credentials("root", private_key_path=str(tmp_path / "no")),
                         _ctx(None))


class TestCommands:
    def test_command_timeout(self, srv: SshDouble, creds: Credentials) -> None:
        """A command that never finishes raises Timeout after its own deadline."""
        with open_session(_target(srv, srv.pin), creds, _ctx(None)) as s, \
                pytest.raises(Timeout, match="did not finish"):
            s.run("sleep", timeout=0.3)


def test_a_server_without_aes_gcm_still_connects(tmp_path: Path) -> None:
    """AES-GCM is only preferred: a server offering aes128-ctr alone (sshd_config ``Ciphers aes128-ctr``) gets
    it (RFC 4253 7.1: the first client algorithm the server supports), and one offering GCM gets GCM."""
    for offered, expected in ((("aes128-ctr",), "aes128-ctr"),
                              (("aes128-ctr", "aes256-gcm@openssh.com"), "aes256-gcm@openssh.com")):
        with SshDouble(ciphers=offered) as server:
            creds = Credentials("root", private_key_path=write_key(server.client_key, tmp_path / "id"))
            with open_session(_target(server, server.pin), creds, _ctx(None)) as s:
                assert s.transport.local_cipher == expected
                assert s.run("x")[1] == "out:x|in:"
