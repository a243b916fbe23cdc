"""Operators, sessions, CSRF and rights of the console.

- Passwords: argon2id (argon2-cffi's defaults, RFC 9106), never stored or logged in clear; an unknown name
  costs the same hash verification as a known one (no user enumeration by timing).
- Sessions: a random 256-bit value in an HttpOnly, SameSite=Strict cookie; the database keeps only its SHA-256,
  so a copy of the database signs nobody in. Idle timeout and absolute lifetime; logout deletes the row.
- CSRF: a per-session token in every form, checked on every POST together with the Origin header.
- Roles, each including the ones before it: ``viewer`` (read) < ``responder`` < ``approver`` (approve/deny)
  < ``admin``. With four-eyes on, an approver may not decide an approval they requested.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select, update

from agent.errors import InputError
from agent.journal import AuditSink
from agent.store import ConsoleSession, Operator, Store, utcnow

__all__ = ["ROLES", "Operators", "SessionInfo", "Sessions", "csrf_ok", "may"]

ROLES = ("viewer", "responder", "approver", "admin")
_RIGHTS = {"view": "viewer", "respond": "responder", "approve": "approver", "admin": "admin"}
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("an unknown operator never matches this")
_NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-")


def may(role: str, right: str) -> bool:
    """Whether ``role`` has ``right`` (view, respond, approve, admin)."""
    return ROLES.index(role) >= ROLES.index(_RIGHTS[right])


@dataclass(frozen=True)
class SessionInfo:
    operator: str
    role: str
    csrf: str


class Operators:
    def __init__(self, store: Store, audit: AuditSink) -> None:
        self.store, self.audit = store, audit
        self._failures: dict[str, list[float]] = {}

    def add(self, name: str, role: str, password: str, *, by: str) -> None:
        if not name or len(name) > 80 or set(name) - _NAME_OK:
            raise InputError(f"operator name {name!r}: use 1-80 letters, digits and . _ @ -")
        if role not in ROLES:
            raise InputError(f"--role {role!r}: one of {', '.join(ROLES)}")
        if len(password) < 12:
            raise InputError("the password needs at least 12 characters")
        with self.store.session() as s:
            if s.get(Operator, name) is not None:
                raise InputError(f"operator {name!r} exists already")
            s.add(Operator(name=name, role=role, password_hash=_HASHER.hash(password), disabled=0))
        self.audit.record("operator.added", operator=name, role=role, by=by)

    def disable(self, name: str, *, by: str) -> None:
        with self.store.session() as s:
            done = s.execute(update(Operator).where(Operator.name == name).values(disabled=1))
            s.execute(delete(ConsoleSession).where(ConsoleSession.operator == name))
        if getattr(done, "rowcount", 0) != 1:
            raise InputError(f"no operator {name!r}")
        self.audit.record("operator.disabled", operator=name, by=by)

    def list(self) -> list[Operator]:
        with self.store.session() as s:
            return list(s.scalars(select(Operator).order_by(Operator.name)))

    def authenticate(self, name: str, password: str, *, source: str) -> Operator | None:
        """The operator if name and password match and the account is enabled; every attempt is audited.

        Five failures for one name within five minutes lock that name for the rest of the five minutes.
        """
        now = time.monotonic()
        recent = [t for t in self._failures.get(name, []) if now - t < 300]
        if len(recent) >= 5:
            self.audit.record("console.login_refused", operator=name, source=source, reason="too many failures")
            return None
        with self.store.session() as s:
            row = s.get(Operator, name)
        ok: bool
        try:
            ok = _HASHER.verify(row.password_hash if row is not None else _DUMMY, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
        if not ok or row is None or row.disabled:
            self._failures[name] = [*recent, now]
            self.audit.record("console.login_failed", operator=name, source=source)
            return None
        self._failures.pop(name, None)
        self.audit.record("console.login", operator=name, role=row.role, source=source)
        return row


class Sessions:
    def __init__(self, store: Store, *, idle: timedelta, lifetime: timedelta) -> None:
        self.store, self.idle, self.lifetime = store, idle, lifetime

    def create(self, operator: str) -> tuple[str, str]:
        """A new session: (cookie value, CSRF token)."""
        value, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.store.session() as s:
            s.add(ConsoleSession(id_hash=_digest(value), operator=operator, csrf=csrf))
        return value, csrf

    def get(self, value: str | None) -> SessionInfo | None:
        """The live session of this cookie value (touching it), or None: unknown, idle too long, too old,
        or its operator disabled."""
        if not value:
            return None
        now = utcnow()
        with self.store.session() as s:
            row = s.get(ConsoleSession, _digest(value))
            if row is None:
                return None
            op = s.get(Operator, row.operator)
            if op is None or op.disabled or now - row.last_seen > self.idle or now - row.created_at > self.lifetime:
                s.delete(row)
                return None
            row.last_seen = now
            return SessionInfo(operator=op.name, role=op.role, csrf=row.csrf)

    def end(self, value: str | None) -> None:
        if value:
            with self.store.session() as s:
                s.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _digest(value)))


def csrf_ok(session: SessionInfo, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(session.csrf, token or "")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()
