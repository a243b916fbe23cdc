"""Secret references: ``env:NAME`` or ``file:PATH``. Inline secrets are refused at load time.

Why references: inventories get committed, pasted into tickets and handed to counsel; a secret written inline
ends up in all of those. The value is read only when a connection is opened and wrapped in ``Secret``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from agent.errors import ConfigError
from connectors.types import Credentials, Secret

__all__ = ["CredentialsSpec", "SecretRef", "parse_ref"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives; ``resolve()`` reads it (never logged)."""

    scheme: str  # "env" | "file"
    location: str

    def resolve(self) -> Secret:
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

    def resolve(self) -> Credentials:
        return Credentials(
            username=self.username,
            password=self.password.resolve() if self.password else None,
            private_key_path=self.private_key,
            private_key_passphrase=self.passphrase.resolve() if self.passphrase else None,
            extra={k: ref.resolve() for k, ref in self.extra},
        )
