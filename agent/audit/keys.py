"""Ed25519 keys for audit checkpoints: create, load, fingerprint, sign and check the checkpoint message.

Why Ed25519: small keys and signatures, deterministic signing (no RNG at log time), and every language has a
verifier, so counsel's expert can check our log without our code. ``cryptography`` is imported only here and
only when a key is actually used, so ``agent audit verify`` without a key stays stdlib-only.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

__all__ = [
    "CHECKPOINT_DOMAIN",
    "KeyError_",
    "checkpoint_message",
    "fingerprint",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "public_raw",
    "sign_checkpoint",
    "verify_checkpoint_signature",
]

#: Domain separation prefix so a checkpoint signature can never be replayed as any other signed message.
CHECKPOINT_DOMAIN = b"containment-agent/audit-checkpoint/v1\n"


class KeyError_(Exception):
    """A key file is missing, unreadable, of the wrong type or too permissive."""


def checkpoint_message(covers_seq: int, covers_hash: str) -> bytes:
    """The exact bytes a checkpoint signs: domain prefix, then ``"<seq>\\n<hash>\\n"``."""
    return CHECKPOINT_DOMAIN + f"{covers_seq}\n{covers_hash}\n".encode("ascii")


def fingerprint(raw_public_key: bytes) -> str:
    """``ed25519:`` + hex SHA-256 of the 32-byte raw public key — what reports print and verifiers compare."""
    return "ed25519:" + hashlib.sha256(raw_public_key).hexdigest()


def generate_keypair(private_path: Path) -> tuple[Path, str]:
    """Write a new PKCS#8 PEM private key (mode 0600) and its ``.pub`` (SubjectPublicKeyInfo PEM).

    Refuses to overwrite an existing key: replacing a signing key silently would orphan every old checkpoint.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public_path = private_path.with_name(private_path.name + ".pub")
    for path in (private_path, public_path):
        if path.exists():
            raise KeyError_(f"{path} already exists; refusing to overwrite a signing key")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    os.chmod(private_path, 0o600)
    pub = key.public_key()
    public_path.write_bytes(pub.public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return public_path, fingerprint(raw)


def load_private_key(path: Path) -> Any:
    """Load an Ed25519 private key; refuse files readable by group/others (a signing key must stay private)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except OSError as exc:
        raise KeyError_(f"cannot read signing key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyError_(f"signing key {path} has mode {mode:o}; it must not be readable by others (chmod 600)")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyError_(f"{path} is not an Ed25519 key")
    return key


def load_public_key(path: Path) -> Any:
    """Load an Ed25519 public key from PEM, or derive it from a private key file if that is what was given."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyError_(f"cannot read public key {path}: {exc.strerror}") from None
    try:
        if b"PRIVATE KEY" in data:
            private = serialization.load_pem_private_key(data, password=None)
            key: Any = private.public_key() if isinstance(private, Ed25519PrivateKey) else None
        else:
            key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"{path} is not a PEM Ed25519 key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyError_(f"{path} is not an Ed25519 key")
    return key


def public_raw(key: Any) -> bytes:
    """The 32 raw bytes of a public key (or of a private key's public half)."""
    from cryptography.hazmat.primitives import serialization

    pub = key.public_key() if hasattr(key, "private_bytes") else key
    raw: bytes = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw


def sign_checkpoint(private_key: Any, covers_seq: int, covers_hash: str) -> str:
    """Base64 (standard alphabet, padded) Ed25519 signature over :func:`checkpoint_message`."""
    signature: bytes = private_key.sign(checkpoint_message(covers_seq, covers_hash))
    return base64.b64encode(signature).decode("ascii")


def verify_checkpoint_signature(public_key: Any, covers_seq: int, covers_hash: str, signature_b64: str) -> bool:
    """True when ``signature_b64`` is a valid signature by ``public_key`` over the checkpoint message."""
    from cryptography.exceptions import InvalidSignature

    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, checkpoint_message(covers_seq, covers_hash))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
