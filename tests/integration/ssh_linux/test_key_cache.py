"""Per-connection costs of a fan-out (issue 19). A passphrase-protected private key is decrypted once per process:
bcrypt_pbkdf makes each decryption of an OpenSSH key cost ≈ 0.24 s of CPU, and a fan-out opens two or three
connections per host. Real sshd (victim) with an encrypted copy of the lab's agent key; a rotated key file (new
passphrase) is read again, and a wrong passphrase is never answered from the cache."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paramiko
import pytest

from connectors.errors import AuthError
from connectors.ssh_linux import session as session_mod
from connectors.types import Credentials, Secret
from tests.integration.ssh_linux.helpers import Agent

pytestmark = pytest.mark.root


def _encrypted_copy(agent: Agent, path: Path, passphrase: str) -> None:
    shutil.copy(agent.lab.agent_key, path)
    path.chmod(0o600)
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", passphrase, "-f", str(path)], check=True, capture_output=True)


def test_encrypted_key_is_decrypted_once_per_file_version(agent: Agent, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "agent_key"
    _encrypted_copy(agent, key, "first pass")
    loads: list[str] = []
    real = paramiko.PKey.from_path

    def counting(path: str, *a: object, **k: object) -> paramiko.PKey:
        loads.append(path)
        return real(path, *a, **k)  # type: ignore[arg-type]
    monkeypatch.setattr(paramiko.PKey, "from_path", counting)
    monkeypatch.setattr(session_mod, "_KEYS", {}, raising=False)
    creds = Credentials("root", private_key_path=str(key), private_key_passphrase=Secret("first pass"))
    for _ in range(3):
        with session_mod.open_session(agent.target("victim"), creds, agent.ctx) as s:
            assert s.run("echo in")[1].strip() == "in"
    assert loads == [str(key)]  # three logins, one decryption

    wrong = Credentials("root", private_key_path=str(key), private_key_passphrase=Secret("not it"))
    with pytest.raises(AuthError, match="wrong passphrase"):
        session_mod.open_session(agent.target("victim"), wrong, agent.ctx)

    key.unlink()  # rotated: a new file with another passphrase; the old one no longer opens it
    _encrypted_copy(agent, key, "second pass")
    with pytest.raises(AuthError, match="wrong passphrase"):
        session_mod.open_session(agent.target("victim"), creds, agent.ctx)
    rotated = Credentials("root", private_key_path=str(key), private_key_passphrase=Secret("second pass"))
    with session_mod.open_session(agent.target("victim"), rotated, agent.ctx) as s:
        assert s.run("echo again")[1].strip() == "again"


def test_aes_gcm_is_negotiated_with_the_real_sshd(agent: Agent) -> None:
    """AES-GCM (one AEAD call per packet) instead of paramiko's default aes128-ctr + a Python-computed HMAC: the
    lab's OpenSSH offers it by default, so that is what both directions use."""
    with agent.open("victim") as s:
        assert (s.transport.local_cipher, s.transport.remote_cipher) == ("aes128-gcm@openssh.com",) * 2
        assert s.run("echo gcm")[1].strip() == "gcm"
