"""Request authentication: per-source HMAC-SHA256 signatures or bearer tokens, and API tokens for people.

HMAC: the sender computes ``HMAC-SHA256(secret, raw request body)`` and sends it as
``X-Agent-Signature: sha256=<hex>`` (``X-Hub-Signature-256`` is accepted too, same format). Bearer:
``Authorization: Bearer <token>``. Comparisons are constant-time (:func:`hmac.compare_digest`). Secrets are read
from their references once at start-up and held only in memory; they never appear in a log line or an error.
A failure raises :class:`AuthFailed` with a reason that is safe to return to the caller (it never echoes the
presented value).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from agent.intake.config import DaemonConfig, SourceConfig

__all__ = ["ApiAuth", "AuthFailed", "SourceAuth", "sign"]

SIGNATURE_HEADERS = ("x-agent-signature", "x-hub-signature-256")


class AuthFailed(Exception):
    """The request is not authenticated; ``str()`` is the reason given in the 401 answer."""


def sign(secret: bytes, body: bytes) -> str:
    """The header value a sender must send for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailed("Authorization header is not 'Bearer <token>'")
    return token.strip()


class SourceAuth:
    """Checks one source's requests. Built from :class:`SourceConfig`; resolves its secret references now."""

    def __init__(self, source: SourceConfig) -> None:
        self.name = source.name
        self._hmac = source.hmac_secret.resolve().reveal().encode() if source.hmac_secret else None
        self._token = source.token.resolve().reveal().encode() if source.token else None

    def check(self, headers: Mapping[str, str], body: bytes) -> str:
        """Return how the request authenticated (``hmac`` or ``token``) or raise :class:`AuthFailed`."""
        if self._hmac is not None:
            presented = next((headers[h] for h in SIGNATURE_HEADERS if h in headers), None)
            if presented is not None:
                algo, _, digest = presented.partition("=")
                if algo.strip().lower() != "sha256" or not digest:
                    raise AuthFailed("signature header must be 'sha256=<hex HMAC-SHA256 of the body>'")
                expected = hmac.new(self._hmac, body, hashlib.sha256).hexdigest()
                if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
                    raise AuthFailed("signature does not match the body (wrong secret or modified body)")
                return "hmac"
        if self._token is not None:
            token = _bearer(headers)
            if token is not None:
                if not hmac.compare_digest(self._token, token.encode()):
                    raise AuthFailed("bearer token is not valid for this source")
                return "token"
        wanted = " or ".join(w for w, on in (("an X-Agent-Signature header", self._hmac),
                                             ("an Authorization: Bearer token", self._token)) if on)
        raise AuthFailed(f"source {self.name!r} requires {wanted}")


class ApiAuth:
    """Bearer tokens of people and tools using the API; the token's name is the audited identity."""

    def __init__(self, config: DaemonConfig) -> None:
        self._tokens = [(name, ref.resolve().reveal().encode()) for name, ref in config.api_tokens.items()]

    def identify(self, headers: Mapping[str, str]) -> str:
        """The identity owning the presented token, or :class:`AuthFailed`."""
        if not self._tokens:
            raise AuthFailed("no API tokens are configured (daemon.api_tokens in agent.yaml)")
        token = _bearer(headers)
        if token is None:
            raise AuthFailed("an Authorization: Bearer <API token> header is required")
        found = None
        for name, secret in self._tokens:  # compare with all of them: timing does not reveal which matched
            if hmac.compare_digest(secret, token.encode()):
                found = name
        if found is None:
            raise AuthFailed("API token is not valid")
        return found
