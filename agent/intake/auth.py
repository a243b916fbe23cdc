"""Request authentication: per-source HMAC-SHA256 signatures or bearer tokens, and API tokens for people.

HMAC with replay protection (the default for ``hmac_secret`` sources): the sender sends
``X-Agent-Timestamp: <unix seconds>``, optionally ``X-Agent-Nonce: <unique string>``, and
``X-Agent-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<nonce>.<raw body>")>`` (with no nonce the
signed text is ``"<timestamp>..<raw body>"``). A request whose timestamp is more than ``replay_window`` (default
5 minutes) from the daemon's clock is refused, and so is a nonce seen before within the window: a captured
request cannot be posted again later. ``require_timestamp: false`` on a source also accepts the older
body-only signature (``HMAC-SHA256(secret, raw body)``, ``X-Hub-Signature-256`` accepted too) for senders that
cannot sign a timestamp — such a request **can be replayed**; check-config says so.

Bearer: ``Authorization: Bearer <token>``. URL token (``url_token: true`` on a source with a ``token``):
``?token=<token>`` in the URL, for senders that cannot set headers (Splunk's built-in webhook action). It is
**weaker**: URLs end up in proxy logs, the sender's configuration and history; prefer a header, or put a proxy
that adds one in front of the daemon.

Comparisons are constant-time (:func:`hmac.compare_digest`). Secrets are read from their references once at
start-up and held only in memory; they never appear in a log line or an error. A failure raises
:class:`AuthFailed` with a reason that is safe to return to the caller (it never echoes the presented value).
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from agent.intake.config import DaemonConfig, SourceConfig

__all__ = ["ApiAuth", "AuthFailed", "AuthState", "SourceAuth", "sign"]

SIGNATURE_HEADERS = ("x-agent-signature", "x-hub-signature-256")
TIMESTAMP_HEADER = "x-agent-timestamp"
NONCE_HEADER = "x-agent-nonce"
_NONCES_MAX = 100_000


class AuthFailed(Exception):
    """The request is not authenticated; ``str()`` is the reason given in the 401 answer."""


def sign(secret: bytes, body: bytes, timestamp: int | None = None, nonce: str = "") -> str:
    """The signature header value for ``body``: ``sha256=<hex>`` (over ``"<ts>.<nonce>.<body>"`` with a timestamp)."""
    signed = body if timestamp is None else f"{timestamp}.{nonce}.".encode() + body
    return "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()


def signed_headers(secret: bytes, body: bytes, nonce: str = "", now: float | None = None) -> dict[str, str]:
    """Every header a replay-protected HMAC sender sends (used by the shipped senders and the tests)."""
    ts = int(time.time() if now is None else now)
    out = {"X-Agent-Timestamp": str(ts), "X-Agent-Signature": sign(secret, body, ts, nonce)}
    if nonce:
        out["X-Agent-Nonce"] = nonce
    return out


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthFailed("Authorization header is not 'Bearer <token>'")
    return token.strip()


@dataclass(frozen=True)
class AuthState:
    """A source's resolved authentication settings as plain data (the front link's ``Config`` carries them)."""

    name: str
    hmac: bytes | None = field(repr=False)
    token: bytes | None = field(repr=False)
    window: float
    require_timestamp: bool
    url_token: bool


class SourceAuth:
    """Checks one source's requests. Built from :class:`SourceConfig`; resolves its secret references now."""

    def __init__(self, source: SourceConfig) -> None:
        self.name = source.name
        self._hmac = source.hmac_secret.resolve().reveal().encode() if source.hmac_secret else None
        self._token = source.token.resolve().reveal().encode() if source.token else None
        self.window = source.replay_window.total_seconds()
        self.require_timestamp = source.require_timestamp
        self.url_token = source.url_token
        self._nonces: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def state(self) -> AuthState:
        """What the HTTP front process needs to check this source's requests (sent over the link)."""
        return AuthState(self.name, self._hmac, self._token, self.window, self.require_timestamp, self.url_token)

    @classmethod
    def restore(cls, state: AuthState) -> SourceAuth:
        """The front's copy, from :meth:`state`: same secrets, its own (empty) record of seen nonces."""
        auth = cls.__new__(cls)
        auth.name, auth._hmac, auth._token = state.name, state.hmac, state.token
        auth.window, auth.require_timestamp, auth.url_token = state.window, state.require_timestamp, state.url_token
        auth._nonces = OrderedDict()
        auth._lock = threading.Lock()
        return auth

    def check(self, headers: Mapping[str, str], body: bytes, query: str = "", now: float | None = None) -> str:
        """Return how the request authenticated (``hmac``, ``token``, ``url-token``) or raise :class:`AuthFailed`."""
        if self._hmac is not None:
            presented = next((headers[h] for h in SIGNATURE_HEADERS if h in headers), None)
            if presented is not None:
                return self._check_hmac(self._hmac, presented, headers, body, time.time() if now is None else now)
        if self._token is not None:
            token = _bearer(headers)
            if token is not None:
                if not hmac.compare_digest(self._token, token.encode()):
                    raise AuthFailed("bearer token is not valid for this source")
                return "token"
            if self.url_token and query:
                values = parse_qs(query, keep_blank_values=True).get("token")
                if values:
                    if len(values) != 1 or not hmac.compare_digest(self._token, values[0].encode()):
                        raise AuthFailed("URL token is not valid for this source")
                    return "url-token"
        wanted = " or ".join(w for w, on in (
            ("X-Agent-Timestamp and X-Agent-Signature headers" if self.require_timestamp
             else "an X-Agent-Signature header", self._hmac),
            ("an Authorization: Bearer token", self._token),
            ("?token= in the URL", self._token is not None and self.url_token)) if on)
        raise AuthFailed(f"source {self.name!r} requires {wanted}")

    def _check_hmac(self, secret: bytes, presented: str, headers: Mapping[str, str], body: bytes,
                    now: float) -> str:
        algo, _, digest = presented.partition("=")
        if algo.strip().lower() != "sha256" or not digest:
            raise AuthFailed("signature header must be 'sha256=<hex HMAC-SHA256>'")
        stamp = headers.get(TIMESTAMP_HEADER)
        nonce = headers.get(NONCE_HEADER, "")
        if stamp is None:
            if self.require_timestamp:
                raise AuthFailed("X-Agent-Timestamp header is required (the signature covers "
                                 "'<timestamp>.<nonce>.<body>'; body-only signatures can be replayed)")
            signed = body
        else:
            if not stamp.strip().isdigit():
                raise AuthFailed("X-Agent-Timestamp must be unix seconds")
            if len(nonce) > 200:
                raise AuthFailed("X-Agent-Nonce is longer than 200 characters")
            signed = f"{stamp.strip()}.{nonce}.".encode() + body
        expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), digest.strip().lower().encode()):
            raise AuthFailed("signature does not match (wrong secret, modified body, or timestamp/nonce not signed)")
        if stamp is None:
            return "hmac-body"
        skew = now - int(stamp)
        if abs(skew) > self.window:
            raise AuthFailed(f"X-Agent-Timestamp is {int(abs(skew))} s {'old' if skew > 0 else 'ahead'}; "
                             f"the replay window is {int(self.window)} s (replayed request or clock skew)")
        if nonce:
            with self._lock:
                while self._nonces and (next(iter(self._nonces.values())) < now - self.window
                                        or len(self._nonces) > _NONCES_MAX):
                    self._nonces.popitem(last=False)
                if nonce in self._nonces:
                    raise AuthFailed("X-Agent-Nonce was already used within the replay window (replayed request)")
                self._nonces[nonce] = now
        return "hmac"


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
