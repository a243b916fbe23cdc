"""Redaction corpus: no password, token, private key or credential header ever reaches an audit segment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.audit import AuditLog, redact_text
from agent.audit.redact import is_secret_key
from agent.audit.segments import list_segments
from connectors.types import Credentials, Secret

PEM = ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
       "QyNTUxOQAAACBSUPERSECRETKEYMATERIAL0000000000000000000000000000AAAA\n-----END OPENSSH PRIVATE KEY-----")
RSA_CUT = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtruncatedRSAkeyBODYwithoutEND"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlc2VjcmV0"

#: (secret substring that must never appear, value to log under an innocent-looking key)
CORPUS: list[tuple[str, object]] = [
    ("Tr0ub4dor&3", "login failed: password=Tr0ub4dor&3 for admin"),
    ("s3cr3t-pw", 'config {"password": "s3cr3t-pw", "user": "root"}'),
    ("hunter22", "passwd: hunter22"),
    ("abcDEF123token", "Authorization: Bearer abcDEF123token"),
    ("dXNlcjpwYXNzd29yZA", "GET / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNzd29yZA==\r\n"),
    ("sessid=9f8e7d", "Cookie: sessid=9f8e7d; theme=dark"),
    ("SUPERSECRETKEYMATERIAL", PEM),
    ("truncatedRSAkeyBODY", RSA_CUT),
    ("urlpass99", "ldaps://admin:urlpass99@dc.example.test/"),
    ("c2lnbmF0dXJlc2VjcmV0", f"token was {JWT}"),
    ("AKIAABCDEFGHIJKLMNOP", "aws key AKIAABCDEFGHIJKLMNOP leaked"),
    ("apikey-777", "api_key=apikey-777&x=1"),
    ("clientsecret-88", "client_secret: clientsecret-88"),
]

#: (secret, key that must be masked whole)
KEYED: list[tuple[str, str]] = [
    ("kv-password-1", "password"), ("kv-passwd-2", "Passwd"), ("kv-secret-3", "client_secret"),
    ("kv-token-4", "access_token"), ("kv-api-5", "api-key"), ("kv-priv-6", "private_key"),
    ("kv-authz-7", "Authorization"), ("kv-cookie-8", "Set-Cookie"), ("kv-unicode-9", "unicodePwd"),
    ("kv-pass-10", "passphrase"), ("kv-cred-11", "credentials"),
]


class ExcWithSecret(Exception):
    pass


@dataclass
class Session:
    host: str
    password: Secret


def _log_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in list_segments(directory))


class TestRedactionCorpus:
    def test_free_text_secrets_never_written(self, tmp_path: Path) -> None:
        """Secrets embedded in free text under innocent keys are masked in the file."""
        with AuditLog(tmp_path) as log:
            for i, (_, text) in enumerate(CORPUS):
                log.record("action.failed", error=text, i=i)
        data = _log_bytes(tmp_path)
        leaked = [secret for secret, _ in CORPUS if secret.encode() in data]
        assert leaked == []
        assert data.count(b"***") >= len(CORPUS)

    @pytest.mark.parametrize(("secret", "key"), KEYED)
    def test_secret_keys_masked_whole(self, tmp_path: Path, secret: str, key: str) -> None:
        """A value under a secret-named key is replaced by *** whatever its type."""
        with AuditLog(tmp_path) as log:
            rec = log.record("x", **{key: secret}, nested={"deep": [{key: {"v": secret}}]})
        assert rec[key] == "***" and rec["nested"]["deep"][0][key] == "***"
        assert secret.encode() not in _log_bytes(tmp_path)

    def test_nested_structures_and_objects(self, tmp_path: Path) -> None:
        """Secrets inside nested dicts/lists/tuples, Secret objects, credentials and exceptions are masked."""
        creds = Credentials(username="svc", password=Secret("cred-pass-1"), extra={"otp": Secret("cred-otp-2")})
        changes = {"unicodePwd": [("MODIFY_REPLACE", [b'"\x00n\x00e\x00w\x00"'])]}
        with AuditLog(tmp_path) as log:
            log.record(
                "plan.created",
                actions=[{"target": "victim", "args": {"user": "bob", "password": "nested-pass-3"}},
                         ("tuple", {"headers": {"Authorization": "Bearer nested-bearer-4"}})],
                creds=creds,
                session=Session(host="h", password=Secret("dc-pass-5")),
                secret_obj=Secret("bare-secret-6"),
                error=ExcWithSecret("auth failed with password=exc-pass-7"),
                ldap_changes=changes,
                raw=b"binary-secret-8",
            )
        data = _log_bytes(tmp_path)
        for secret in ("cred-pass-1", "cred-otp-2", "nested-pass-3", "nested-bearer-4", "dc-pass-5",
                       "bare-secret-6", "exc-pass-7", "binary-secret-8"):
            assert secret.encode() not in data, secret
        assert b"ExcWithSecret" in data and b"victim" in data and b"bob" in data

    def test_known_secret_values_scrubbed_anywhere(self, tmp_path: Path) -> None:
        """A resolved secret registered with the log is masked even in a shape no pattern knows."""
        with AuditLog(tmp_path, known_secrets=("Corr3ct-Horse",)) as log:
            log.add_known_secret(Secret("Batt3ry-Staple"))
            log.record("action.failed", error="winrm said: the value Corr3ct-Horse is wrong",
                       detail=["echo Batt3ry-Staple"])
        data = _log_bytes(tmp_path)
        assert b"Corr3ct-Horse" not in data and b"Batt3ry-Staple" not in data

    def test_harmless_text_untouched(self) -> None:
        """Ordinary operational text passes through unchanged (redaction must not destroy the record)."""
        for text in ("isolated victim (10.0.0.5) via nftables", "release restored 3 rules",
                     "account bob disabled in OU=Staff", "password policy unchanged"):
            assert redact_text(text) == text

    def test_key_classifier(self) -> None:
        """Key names are classified after folding case and separators; ordinary keys are not secret."""
        assert all(is_secret_key(k) for k in ("PASSWORD", "api_key", "X-Auth-Token", "ssh_private_key", "pwd"))
        assert not any(is_secret_key(k) for k in ("target", "host_key_fingerprint", "key_fingerprint", "action"))
