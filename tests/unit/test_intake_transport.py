"""Transport of the webhook: header/body deadlines (slow clients get 408 and lose the connection) and the TLS
listener with mutual TLS (only senders with a certificate from the configured CA get a connection)."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from agent.lab.tls import generate_ca, issue_server_cert
from agent.store import Alert
from tests.unit.daemon_env import TOKEN, configure, running

GEN = {"Authorization": f"Bearer {TOKEN}"}


def _read_all(sock: socket.socket, limit: float) -> bytes:
    sock.settimeout(limit)
    out = b""
    try:
        while chunk := sock.recv(4096):
            out += chunk
    except TimeoutError:
        pass
    return out


def test_slow_headers_and_slow_body_get_408(tmp_path: Path) -> None:
    cfg, _ = configure(tmp_path, daemon="  header_timeout: 1s\n  body_timeout: 1s\n")
    with running(cfg) as daemon:
        host, port = daemon.host, daemon.port
        t0 = time.monotonic()
        with socket.create_connection((host, port)) as s:  # says nothing at all
            assert _read_all(s, 5).startswith(b"HTTP/1.1 408")
        with socket.create_connection((host, port)) as s:  # headers that never end
            s.sendall(b"POST /alerts/gen HTTP/1.1\r\nHost: x\r\n")
            assert _read_all(s, 5).startswith(b"HTTP/1.1 408")
        with socket.create_connection((host, port)) as s:  # a body that never completes
            s.sendall(b"POST /alerts/gen HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                      + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"rule_id\":")
            assert _read_all(s, 5).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - t0 < 12
        with httpx.Client(base_url=daemon.url, timeout=10) as client:  # a normal client is unaffected
            assert client.post("/alerts/gen", json={"rule_id": "x-1", "host": "web1"}, headers=GEN).status_code == 202
        with daemon.app.store.session() as sess:
            assert sess.scalar(select(func.count()).select_from(Alert)) == 1


def _client_cert(ca_pem: bytes, ca_key: Any) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca = x509.load_pem_x509_certificate(ca_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wazuh")]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def test_tls_listener_with_client_certificates(tmp_path: Path) -> None:
    ca_pem, ca_key = generate_ca("test CA")
    cert, key = issue_server_cert(ca_pem, ca_key, "localhost", "127.0.0.1")
    ccert, ckey = _client_cert(ca_pem, ca_key)
    for name, data in (("ca.pem", ca_pem), ("srv.crt", cert), ("srv.key", key), ("cli.crt", ccert),
                       ("cli.key", ckey)):
        (tmp_path / name).write_bytes(data)
    cfg, _ = configure(tmp_path, daemon="  tls: {cert: srv.crt, key: srv.key, client_ca: ca.pem}\n")
    with running(cfg) as daemon:
        assert daemon.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        ctx.load_cert_chain(str(tmp_path / "cli.crt"), str(tmp_path / "cli.key"))
        with httpx.Client(base_url=daemon.url, verify=ctx, timeout=10) as client:
            assert client.post("/alerts/gen", json={"rule_id": "x-1", "host": "web1"}, headers=GEN).status_code == 202
        anonymous = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        with (httpx.Client(base_url=daemon.url, verify=anonymous, timeout=10) as client,
              pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError))):
            client.post("/alerts/gen", json={"rule_id": "x-2", "host": "web1"}, headers=GEN)
        with (httpx.Client(base_url=daemon.url.replace("https", "http"), timeout=5) as plain,
              pytest.raises(httpx.HTTPError)):
            plain.post("/alerts/gen", json={"rule_id": "x-3", "host": "web1"}, headers=GEN)


def test_tls_config_errors_name_the_field(tmp_path: Path) -> None:
    from agent.errors import ConfigError
    from agent.intake.config import load_daemon_config
    (tmp_path / "x.crt").write_text("not a certificate")
    with pytest.raises(ConfigError, match="tls.key"):
        load_daemon_config({"tls": {"cert": "x.crt", "key": "missing.key"}}, tmp_path / "agent.yaml")
    (tmp_path / "x.key").write_text("nope")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_daemon_config({"tls": {"cert": "x.crt", "key": "x.key"}}, tmp_path / "agent.yaml")
