"""Secret references: ``env:NAME`` or ``file:PATH``. Inline secrets are refused at load time.

Why references: inventories get committed, pasted into tickets and handed to counsel; a secret written inline
ends up in all of those. The value is read only when a connection is opened and wrapped in ``Secret``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from pathlib import Path

from agent.errors import ConfigError
from agent.yamlsrc import Node

if TYPE_CHECKING:  # imported where a secret is resolved: agent.yaml's parse (every command) needs neither
    from connectors.types import Credentials, Secret

__all__ = ["CredentialsSpec", "SecretRef", "parse_credentials", "parse_ref"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CRED_FIELDS = {"username", "password", "private_key", "passphrase", "secret", "token"}
_SECRET_FIELDS = ("password", "passphrase", "secret", "token")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives; ``resolve()`` reads it (never logged)."""

    scheme: str  # "env" | "file"
    location: str

    def resolve(self) -> Secret:
        from connectors.types import Secret

        if self.scheme == "env":
            value = os.environ.get(self.location)
            if value is None:
                raise ConfigError(f"environment variable {self.location} is not set", field="credentials")
            return Secret(value)
        try:
            return Secret(Path(self.location).read_text(encoding="utf-8").rstrip("\r\n"))
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {self.location}: {exc.strerror}",
                              field="credentials") from None

    def __str__(self) -> str:
        return f"{self.scheme}:{self.location}"


def parse_ref(text: str, base: Path) -> SecretRef | None:
    """Parse ``env:NAME``/``file:PATH``; returns None for anything else (the caller reports it)."""
    if text.startswith("env:") and _ENV_NAME.fullmatch(text[4:]):
        return SecretRef("env", text[4:])
    if text.startswith("file:") and len(text) > 5:
        p = Path(os.path.expanduser(text[5:]))
        return SecretRef("file", str(p if p.is_absolute() else (base / p).resolve()))
    return None


@dataclass(frozen=True)
class CredentialsSpec:
    """Credentials as written in the inventory: a user name and references, resolved on demand."""

    username: str
    password: SecretRef | None = None
    private_key: str | None = None
    passphrase: SecretRef | None = None
    extra: tuple[tuple[str, SecretRef], ...] = ()
    hops: tuple[CredentialsSpec, ...] = ()  # the jump hosts' credentials, outermost first (see Target.jump)

    def resolve(self) -> Credentials:
        from connectors.types import Credentials

        return Credentials(
            username=self.username,
            password=self.password.resolve() if self.password else None,
            private_key_path=self.private_key,
            private_key_passphrase=self.passphrase.resolve() if self.passphrase else None,
            extra={k: ref.resolve() for k, ref in self.extra},
            hops=tuple(hop.resolve() for hop in self.hops),
        )


def parse_credentials(node: Node, base: Path) -> CredentialsSpec:
    """A ``credentials:`` mapping of the inventory (targets and jump hosts); inline secrets are refused."""
    node.mapping(allowed=_CRED_FIELDS, required={"username"})
    refs = {}
    for key in _SECRET_FIELDS:
        child = node.get(key)
        if child is None:
            continue
        text = child.str_()
        ref = parse_ref(text, base)
        if ref is None:
            raise child.error("inline secrets are not allowed: write env:VARIABLE or file:/path/to/secret")
        refs[key] = ref
    key_node = node.get("private_key")
    private_key = None
    if key_node is not None:
        text = key_node.str_()
        text = text.removeprefix("file:")
        p = Path(text).expanduser()
        private_key = str(p if p.is_absolute() else (base / p).resolve())
    extra = tuple((k, refs[k]) for k in ("secret", "token") if k in refs)
    return CredentialsSpec(username=node.child("username").str_(), password=refs.get("password"),
                           private_key=private_key, passphrase=refs.get("passphrase"), extra=extra)

