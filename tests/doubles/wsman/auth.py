"""Server side of WinRM authentication for the double: Basic, NTLM (pyspnego acceptor) and NTLM sealing.

NTLM authenticates the TCP connection, not a request: after the three-leg exchange the connection stays
authenticated and, over HTTP, every message is sealed with the NTLM session key in the
``multipart/encrypted; protocol="application/HTTP-SPNEGO-session-encrypted"`` framing of MS-WSMV 2.2.9.1.
pyspnego's NTLM acceptor reads its credentials from the file named by ``NTLM_USER_FILE``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from pathlib import Path
from typing import Any

__all__ = ["ENC_CONTENT_TYPE", "cert_hash", "decrypt_body", "encrypt_body", "ntlm_acceptor", "write_ntlm_user_file"]

_BOUNDARY = b"--Encrypted Boundary"
_PROTO = b"application/HTTP-SPNEGO-session-encrypted"
ENC_CONTENT_TYPE = ('multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";'
                    'boundary="Encrypted Boundary"')


def write_ntlm_user_file(path: Path, users: dict[str, str], domain: str,
                         domain_users: dict[str, str] | None = None) -> Path:
    """Heimdal-format credential file: each local user with the host's name as domain and with none
    (``.\\user``); ``domain_users`` are ``"CORP\\name": password`` accounts of the AD domain."""
    lines = []
    for user, password in users.items():
        lines += [f"{domain}:{user}:{password}", f":{user}:{password}"]
    for account, password in (domain_users or {}).items():
        dom, _, user = account.partition("\\")
        lines.append(f"{dom}:{user}:{password}")
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


def ntlm_acceptor(channel_hash: bytes | None) -> Any:
    """A fresh pyspnego NTLM server context (credentials from ``NTLM_USER_FILE``); CBT enforced over TLS."""
    import spnego
    from spnego.channel_bindings import GssChannelBindings

    if not os.environ.get("NTLM_USER_FILE"):
        raise RuntimeError("NTLM_USER_FILE must be set before the double accepts NTLM")
    bindings = GssChannelBindings(application_data=b"tls-server-end-point:" + channel_hash) if channel_hash else None
    return spnego.server(protocol="ntlm", channel_bindings=bindings)


def cert_hash(cert_pem: bytes) -> bytes:
    """``tls-server-end-point`` hash (RFC 5929): SHA-256 of the DER certificate for SHA-256 signatures."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)
    return hashlib.sha256(der).digest()


def decrypt_body(ctx: Any, body: bytes) -> bytes:
    """Unseal a ``multipart/encrypted`` request body; raises ``ValueError`` when framing or length is wrong."""
    parts = [p for p in body.split(_BOUNDARY + b"\r\n") if p]
    if len(parts) != 2:
        raise ValueError("expected one encrypted part")
    header, payload = parts
    if _PROTO not in header or b"Length=" not in header:
        raise ValueError("bad encrypted part header")
    expected = int(header.split(b"Length=")[1].strip())
    if not payload.endswith(_BOUNDARY + b"--\r\n"):
        raise ValueError("missing closing boundary")
    payload = payload[: -len(_BOUNDARY + b"--\r\n")]
    prefix = b"\tContent-Type: application/octet-stream\r\n"
    if not payload.startswith(prefix):
        raise ValueError("missing octet-stream part")
    data = payload[len(prefix):]
    sig_len = struct.unpack("<i", data[:4])[0]
    plain: bytes = ctx.unwrap_winrm(data[4:4 + sig_len], data[4 + sig_len:])
    if len(plain) != expected:
        raise ValueError("encrypted length mismatch")
    return plain


def encrypt_body(ctx: Any, plain: bytes) -> bytes:
    """Seal a response the way WinRM does (signature length, signature, sealed data inside the MIME frame)."""
    wrapped = ctx.wrap_winrm(plain)
    return (_BOUNDARY + b"\r\n\tContent-Type: " + _PROTO + b"\r\n\tOriginalContent: type=application/soap+xml;"
            b"charset=UTF-8;Length=" + str(len(plain)).encode() + b"\r\n" + _BOUNDARY +
            b"\r\n\tContent-Type: application/octet-stream\r\n" + struct.pack("<i", len(wrapped.header)) +
            wrapped.header + wrapped.data + _BOUNDARY + b"--\r\n")


def parse_basic(value: str) -> tuple[str, str] | None:
    """``Basic b64(user:password)`` → (user, password)."""
    try:
        user, _, password = base64.b64decode(value).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return user, password
