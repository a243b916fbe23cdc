"""LDAP connections to a domain controller: strict TLS, pooling, and one choke point for errors.

Why pooled: disabling 100 accounts should cost one TCP+TLS+bind (≈ 10–55 ms), not 100 (LAB.md). The engine opens
a session per action and closes it; closing returns the bound connection to the connector's pool, keyed by
(address, port, TLS mode, server name, CA, bind user, password), so the next action reuses it. A connection that
failed is discarded, never pooled.

Why our own TLS check: ldap3's name check also accepts the *address* the client connected to whenever the
certificate lists it, so ``valid_names`` alone cannot pin the expected server name. :class:`StrictTls` lets
OpenSSL verify the chain *and* ``server_name`` (``check_hostname``), and records the handshake failure so the
error says "untrusted CA / wrong name" rather than "socket error".
"""

from __future__ import annotations

import math
import socket
import ssl
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import ldap3
from ldap3.core import exceptions as lx

from connectors.active_directory import wire
from connectors.active_directory.errors import from_exception, from_result
from connectors.active_directory.options import DirectoryOptions
from connectors.errors import AuthError, ConnectorError, TLSError
from connectors.types import ConnectorContext, Credentials, Secret

__all__ = ["ADSession", "ConnectionPool", "Entry", "StrictTls", "connect", "failpoint"]

Entry = dict[str, Any]  # {"dn": str, "attributes": {name: [bytes, ...]}}
PoolKey = tuple[str, int, bool, str, str, str, Secret]


def failpoint(name: str) -> None:
    """The agent's crash-test hooks (agent.failpoints); absent when the connector runs without the agent."""
    try:
        from agent.failpoints import failpoint as agent_failpoint
    except ImportError:  # pragma: no cover - the connector used as a library
        return
    agent_failpoint(name)


def _batch_failpoints() -> dict[str, Any]:
    """Hooks that let a crash test stop a pipelined batch of modifies at item K (``ad-batch-sent:K``: the first
    K modifies are written to the DC and none of their answers read; ``ad-batch-answered:K``: the answer to the
    K-th was read, later ones may be in flight). Nothing when no such failpoint is armed (the usual case)."""
    try:
        from agent.failpoints import armed
    except ImportError:  # pragma: no cover - the connector used as a library
        return {}
    names = [n for n in armed() if n.startswith(("ad-batch-sent:", "ad-batch-answered:"))]
    if not names:
        return {}
    cuts = {int(n.split(":")[1]) for n in names if n.startswith("ad-batch-sent:") and n.split(":")[1].isdigit()}
    return {"cuts": cuts, "on_sent": lambda n: failpoint(f"ad-batch-sent:{n}"),
            "on_answered": lambda n: failpoint(f"ad-batch-answered:{n}")}


class StrictTls(ldap3.Tls):  # type: ignore[misc]
    """ldap3 ``Tls`` (CERT_REQUIRED, our CA, valid_names) whose handshake OpenSSL checks against ``server_name``."""

    def __init__(self, ca_file: str | None, server_name: str) -> None:
        if ca_file is not None and not Path(ca_file).is_file():
            raise TLSError(f"CA file {ca_file!r} does not exist or is not a file")
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file, valid_names=[server_name])
        self.server_name = server_name
        self.failure: BaseException | None = None
        try:
            self._context = ssl.create_default_context(cafile=ca_file)  # CERT_REQUIRED, check_hostname, TLS>=1.2
        except (ssl.SSLError, OSError) as exc:
            raise TLSError(f"CA file {ca_file!r} could not be loaded: {exc}") from exc

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        self.failure = None
        try:
            connection.socket = self._context.wrap_socket(connection.socket, server_hostname=self.server_name,
                                                          do_handshake_on_connect=True)
        except (ssl.SSLError, OSError) as exc:
            self.failure = exc
            raise


def _user_of(creds: Credentials) -> str:
    if not creds.username or any(ord(c) < 32 for c in creds.username):
        raise AuthError("bind user name is missing or contains control characters")
    return creds.username


def connect(opts: DirectoryOptions, creds: Credentials, ctx: ConnectorContext) -> ldap3.Connection:
    """Open, secure (LDAPS or StartTLS) and bind one connection; every failure is a ConnectorError."""
    user = _user_of(creds)
    if creds.password is None or not creds.password.reveal():
        raise AuthError(f"no bind password for {user!r}: an empty password would be an anonymous bind")
    tls = StrictTls(opts.ca_file, opts.server_name)
    where = f"{opts.address}:{opts.port}"
    server = ldap3.Server(opts.address, port=opts.port, use_ssl=not opts.starttls, tls=tls, get_info=ldap3.NONE,
                          connect_timeout=ctx.connect_timeout)
    conn = ldap3.Connection(server, user=user, password=creds.password.reveal(), auto_bind=ldap3.AUTO_BIND_NONE,
                            raise_exceptions=False, receive_timeout=max(1, math.ceil(ctx.command_timeout)),
                            auto_referrals=False, collect_usage=True, read_only=False)
    step = f"connect to {where}"
    try:
        conn.open(read_server_info=False)
        conn.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Nagle costs ≈ 40 ms per bind
        if opts.starttls:
            step = f"StartTLS with {where}"
            if not conn.start_tls(read_server_info=False):
                raise TLSError(f"{step}: the server refused StartTLS ({conn.result.get('description')})")
        step = f"bind to {where} as {user!r}"
        if not conn.bind(read_server_info=False):
            raise from_result(conn.result, step)
    except (lx.LDAPException, OSError, ConnectorError) as exc:
        _discard(conn)
        raise from_exception(exc, step, tls.failure) from exc
    return conn


def _discard(conn: ldap3.Connection) -> None:
    """Unbind and close, also half-open connections (a failed handshake leaves a socket ldap3 forgets)."""
    try:
        conn.unbind()
    except (lx.LDAPException, OSError):
        pass
    sock = getattr(conn, "socket", None)
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


class ConnectionPool:
    """Bound connections per key, checked out exclusively (ldap3 sync connections are not thread-safe)."""

    def __init__(self) -> None:
        self._idle: dict[PoolKey, list[ldap3.Connection]] = {}
        self._lock = threading.Lock()
        self.opened = 0  # connections ever opened (the bench and tests read it)

    @staticmethod
    def key(opts: DirectoryOptions, creds: Credentials) -> PoolKey:
        return (opts.address, opts.port, opts.starttls, opts.server_name, opts.ca_file or "",
                creds.username, creds.password or Secret(""))

    def acquire(self, opts: DirectoryOptions, creds: Credentials, ctx: ConnectorContext) -> ldap3.Connection:
        key = self.key(opts, creds)
        with self._lock:
            idle = self._idle.get(key, [])
            while idle:
                conn = idle.pop()
                if not conn.closed and conn.bound:
                    return conn
                _discard(conn)
        conn = connect(opts, creds, ctx)
        with self._lock:
            self.opened += 1
        return conn

    def release(self, opts: DirectoryOptions, creds: Credentials, conn: ldap3.Connection, *, broken: bool) -> None:
        if broken or conn.closed:
            _discard(conn)
            return
        with self._lock:
            self._idle.setdefault(self.key(opts, creds), []).append(conn)

    def close_all(self) -> None:
        with self._lock:
            conns = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for conn in conns:
            _discard(conn)


class ADSession:
    """One checked-out connection plus what the actions need: searches, modifies, counters, the bind identity."""

    def __init__(self, conn: ldap3.Connection, opts: DirectoryOptions, creds: Credentials,
                 pool: ConnectionPool | None) -> None:
        self.conn = conn
        self.opts = opts
        self.bind_user = creds.username
        self._creds = creds
        self._pool = pool
        self.broken = False
        self.searches = 0
        self.modifies = 0  # modify requests sent on this session (tests prove refusals send none)
        self._netbios: str | None = None

    @contextmanager
    def _mapped(self, what: str) -> Iterator[None]:
        try:
            yield
        except ConnectorError:
            raise
        except (lx.LDAPException, OSError) as exc:
            self.broken = True
            raise from_exception(exc, what) from exc

    def search(self, base: str, filt: str, attributes: Sequence[str], *, scope: str = ldap3.SUBTREE,
               size_limit: int = 0, missing_ok: bool = True) -> tuple[list[Entry], bool]:
        """Entries (raw bytes values) and whether the size limit was hit. ``noSuchObject`` base → no entries."""
        what = f"search {base!r}"
        with self._mapped(what):
            self.searches += 1
            self.conn.search(base, filt, search_scope=scope, attributes=list(attributes), size_limit=size_limit)
        code = int(self.conn.result.get("result", 0))
        if code == 32 and missing_ok:
            return [], False
        if code not in (0, 4):
            if code in (51, 52):
                self.broken = True
            raise from_result(self.conn.result, what)
        entries = [{"dn": item["dn"], "attributes": dict(item.get("raw_attributes", {}))}
                   for item in self.conn.response or [] if item.get("type") == "searchResEntry"]
        return entries, code == 4

    def modify(self, dn: str, changes: Mapping[str, list[tuple[str, list[Any]]]], *,
               ok_codes: Sequence[int] = ()) -> int:
        """Send one modify; returns the LDAP result code (0 or one of ``ok_codes``), raises otherwise.

        Error texts name the DN and attributes, never the values (a value may be a password).
        """
        what = f"modify {dn!r} ({', '.join(changes)})"
        with self._mapped(what):
            self.modifies += 1
            self.conn.modify(dn, dict(changes))
        code = int(self.conn.result.get("result", 0))
        if code != 0 and code not in ok_codes:
            raise from_result(self.conn.result, what)
        return code

    def search_many(self, base: str, filters: Sequence[str], attributes: Sequence[str], *,
                    page_size: int = 1000, first_page_only: bool = False) -> tuple[list[Entry], bool]:
        """Every entry matching any of ``filters`` (subtree of ``base``): the searches are pipelined, each paged
        (RFC 2696) so a DC's MaxPageSize never truncates them. Same error mapping as :meth:`search`.

        ``first_page_only``: stop after the first ``page_size`` entries of each search (the server's paged
        state is released) — the way to ask "are there any?" cheaply, since Samba ignores a request's
        sizeLimit. Returns the entries and whether any search had more.
        """
        what = f"search {base!r} ({len(filters)} filter(s))"
        ops = [wire.search_request(self.conn, base, f, attributes) for f in filters]
        entries: list[Entry] = []
        truncated = False
        cookies: list[bytes | None] = [None] * len(ops)
        pending = list(range(len(ops)))
        while pending:
            with self._mapped(what):
                self.searches += len(pending)
                replies = wire.exchange(self.conn, [(ops[i], wire.paged_control(page_size, cookies[i]))
                                                    for i in pending])
            following = []
            for i, reply in zip(pending, replies, strict=True):
                self._check_search(reply.result, what)
                entries.extend(reply.entries)
                truncated = truncated or reply.code == 4
                if reply.cookie and reply.code == 0:
                    cookies[i] = reply.cookie
                    following.append(i)
            if first_page_only and following:
                truncated = True
                with self._mapped(what):  # size 0 + cookie: the server drops the rest (RFC 2696 §3)
                    for reply in wire.exchange(self.conn, [(ops[i], wire.paged_control(0, cookies[i]))
                                                           for i in following]):
                        self._check_search(reply.result, what)
                following = []
            pending = following
        return entries, truncated

    def _check_search(self, result: Mapping[str, Any], what: str) -> None:
        code = int(result.get("result", -1))
        if code not in (0, 4):
            if code in (51, 52):
                self.broken = True
            raise from_result(result, what)

    def read_many(self, dns: Sequence[str], attributes: Sequence[str]) -> list[list[Entry]]:
        """Base reads of several entries, pipelined; ``[]`` for an entry that does not exist."""
        what = f"read {len(dns)} entries"
        ops = [(wire.search_request(self.conn, dn, "(objectClass=*)", attributes, scope=ldap3.BASE, cached=False),
                b"") for dn in dns]
        with self._mapped(what):
            self.searches += len(ops)
            replies = wire.exchange(self.conn, ops)
        out: list[list[Entry]] = []
        for reply in replies:
            if reply.code == 32:
                out.append([])
            elif reply.code in (0, 4):
                out.append(reply.entries)
            else:
                if reply.code in (51, 52):
                    self.broken = True
                raise from_result(reply.result, what)
        return out

    def modify_many(self, requests: Sequence[tuple[str, Sequence[wire.Change]]]) -> list[dict[str, Any]]:
        """Send every ``(dn, [(MODIFY_*, attribute, values)])`` pipelined; one result dict per request, in order.

        Result codes are returned, not raised (the caller decides per entry); only a failure of the connection
        itself raises (mapped like :meth:`modify`). Values never appear in errors.
        """
        what = f"modify {len(requests)} entries ({', '.join(sorted({c[1] for _, cs in requests for c in cs}))})"
        ops = [(wire.encode_modify(dn, changes), b"") for dn, changes in requests]
        with self._mapped(what):
            self.modifies += len(ops)
            replies = wire.exchange(self.conn, ops, **_batch_failpoints())
        if any(r.code in (51, 52) for r in replies):
            self.broken = True
        return [r.result for r in replies]

    def netbios_domain(self) -> str:
        """The directory's NetBIOS domain name (``LAB`` of ``LAB\\jdoe``): ``options.netbios_domain`` if set,
        else read once per session from the domain's crossRef (``CN=Partitions`` of the configuration naming
        context, attribute ``nETBIOSName``, MS-ADTS 6.1.1.2.1.1.3)."""
        if self.opts.netbios_domain:
            return self.opts.netbios_domain
        if self._netbios is None:
            from connectors.active_directory.options import dn_within
            root, _ = self.search("", "(objectClass=*)", ["configurationNamingContext"], scope=ldap3.BASE)
            config = root[0]["attributes"].get("configurationNamingContext", [b""])[0].decode() if root else ""
            found = ""
            if config:
                refs, _ = self.search(f"CN=Partitions,{config}", "(&(objectClass=crossRef)(nETBIOSName=*))",
                                      ["nETBIOSName", "nCName"], scope=ldap3.LEVEL)
                for ref in refs:
                    nc = ref["attributes"].get("nCName", [b""])[0].decode()
                    if nc and dn_within(self.opts.base_dn, nc):
                        found = ref["attributes"]["nETBIOSName"][0].decode()
            self._netbios = found
        return self._netbios

    def close(self) -> None:
        """Return the connection to the pool (or unbind it when pooling is off or it failed)."""
        if self._pool is not None:
            self._pool.release(self.opts, self._creds, self.conn, broken=self.broken)
        else:
            _discard(self.conn)
        self._pool = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
