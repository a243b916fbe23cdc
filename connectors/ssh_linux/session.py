"""SSH sessions to Linux hosts: pinned host key, key or password auth, commands with exit status and timeouts.

Why a bare ``paramiko.Transport`` instead of ``SSHClient``: the host key is checked by us *before* any credential
is offered (see :mod:`.hostkeys`), no agent or ``~/.ssh`` keys are ever tried, curve25519 key exchange is put
first (LAB.md: the post-quantum default costs ≈130 ms per connection) and AES-GCM before paramiko's default
aes128-ctr + HMAC (:data:`FAST_CIPHERS`), ``TCP_NODELAY`` avoids Nagle delays on
the many small request/response exchanges and quick ACKs avoid sshd's (see :class:`_QuickAckSocket`). paramiko
itself is imported lazily in :func:`open_session` (≈0.3 s of start-up that validation and dry runs must not pay).
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import Any, Self

from connectors.errors import AuthError, Rejected, Timeout, Unreachable
from connectors.ssh_linux import hostkeys
from connectors.ssh_linux.privilege import ENV, Privilege, parse_privilege, prelude
from connectors.ssh_linux.errors import mapped
from connectors.types import ConnectorContext, Credentials, Target

__all__ = ["FAST_CIPHERS", "FAST_KEX", "SshSession", "open_session"]

FAST_KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org")
# AES-GCM (RFC 5647; OpenSSH's aes*-gcm@openssh.com, in sshd's default Ciphers since 6.2) first: one AEAD call
# of cryptography per packet, where paramiko's default aes128-ctr adds an HMAC computed per packet through
# Python's hmac module. callgrind, 40 commands on one session against the lab's sshd (two runs each): 2.68-2.96
# M instructions per command with aes128-ctr + hmac-sha2-256, 1.62-1.87 M with aes128-gcm (a connection's kex and
# login: 8.1 vs 8.0 M). A server without GCM negotiates the next one both sides support (RFC 4253 7.1: the
# first of the client's list the server also lists).
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


class SshSession:
    """An authenticated connection to one host; :meth:`run` executes one command per SSH channel."""

    def __init__(self, target: Target, creds: Credentials, ctx: ConnectorContext, transport: Any,
                 port: int, trusted_new_key: bool = False) -> None:
        self.target = target
        self.creds = creds
        self.ctx = ctx
        self.transport = transport
        self.port = port
        self.trusted_new_key = trusted_new_key
        self.host_fingerprint = hostkeys.fingerprint(transport.get_remote_server_key().asbytes())
        self.privilege: Privilege = parse_privilege(target.options)
        self._prelude = ENV + prelude(self.privilege)
        self.commands = 0  # commands run so far: a remembered read is only reused if nothing ran after it
        self.remembered: tuple[float, int, Any] | None = None  # (monotonic time, commands, value)
        self.hops: list[Any] = []  # transports of the jump hosts this session runs through, outermost first

    @property
    def label(self) -> str:
        return self.target.name or self.target.address

    def run(self, cmd: str, input: str | None = None, timeout: float | None = None, *,
            check: bool = False, what: str = "") -> tuple[int, str, str]:
        """Run ``cmd`` (static text or values already quoted) and return ``(rc, stdout, stderr)``.

        ``input`` goes to the command's stdin (rulesets travel this way, never on the command line).
        ``timeout`` bounds the whole command; exceeding it raises :class:`Timeout` (outcome unknown).
        ``check=True`` raises :class:`Rejected` on a non-zero exit status, naming ``what``.
        Every command starts with the fixed environment and :func:`~.privilege.prelude` (``priv``, ``D``).
        """
        limit = self.ctx.command_timeout if timeout is None else timeout
        what = what or cmd.split(" ", 1)[0]
        self.commands += 1
        try:
            with mapped(self.label, what):
                chan = self.transport.open_session(timeout=limit)
                try:
                    chan.exec_command(self._prelude + cmd)
                    if input is not None:
                        chan.sendall(input.encode())
                    chan.shutdown_write()
                    rc, out, err = self._collect(chan, time.monotonic() + limit, what, limit)
                finally:
                    chan.close()
        except (Timeout, Unreachable):
            # A connection that let a command time out (or lost its transport) is not trusted with the next one:
            # closed, every later command on it fails at once (issue 14 finding 9: after a network cut each
            # retry, revert and read-back waited out its own timeout, ≈80 s without a word). Whoever wants to
            # try again opens a fresh connection.
            self.close()
            raise
        stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
        if check and rc != 0:
            text = (stderr.strip() or stdout.strip())[-500:]
            raise Rejected(f"{what} failed on {self.target.address} (exit {rc}): {text}", target=self.label,
                           detail={"exit_status": rc})
        return rc, stdout, stderr

    def _collect(self, chan: Any, deadline: float, what: str, limit: float) -> tuple[int, bytes, bytes]:
        out, err = bytearray(), bytearray()
        while True:
            if chan.recv_ready():
                out += chan.recv(65536)
                continue
            if chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                continue
            if chan.exit_status_ready() and (chan.eof_received or chan.closed):
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Timeout(f"{what} did not finish within {limit:g} s on {self.target.address}",
                              target=self.label)
            if chan.eof_received:
                # Nothing more can arrive but the exit status (RFC 4254 §6.10 sends it as its own message; OpenSSH
                # once it has reaped the command, after the output's EOF when the output closed first), and
                # paramiko sets the channel's pipe for good at EOF (channel.py _handle_eof: set_forever), so
                # select would return at once: wait on the status event instead of spinning a pool thread (0.5
                # CPU-s for a 0.5 s wait, tests/integration/ssh_linux/test_collect_waits.py).
                chan.status_event.wait(min(remaining, 0.5))
            else:
                select.select([chan], [], [], min(remaining, 0.5))
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        return chan.recv_exit_status(), bytes(out), bytes(err)

    def remember(self, value: Any) -> None:
        """Keep what the command just run read from the host (see :meth:`recall`)."""
        self.remembered = (time.monotonic(), self.commands, value)

    def recall(self, max_age: float) -> Any:
        """The remembered read if it is younger than ``max_age`` s and no command ran after it, else None.

        Why: the engine snapshots and then applies within milliseconds on the same session; reading the whole
        firewall state twice would cost a round trip and tell nothing new.
        """
        if self.remembered is None:
            return None
        at, commands, value = self.remembered
        if commands != self.commands or time.monotonic() - at > max_age:
            return None
        return value

    def fresh(self) -> SshSession:
        """A *new* connection with the same target, credentials and pins (proves new sessions still work)."""
        return open_session(self.target, self.creds, self.ctx)

    def close(self) -> None:
        self.transport.close()
        for hop in reversed(self.hops):
            hop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_TCP_QUICKACK = getattr(socket, "TCP_QUICKACK", 12)  # Linux value; other systems simply ignore the failure


class _QuickAckSocket:
    """A TCP socket that acknowledges every segment at once (``TCP_QUICKACK`` re-armed after each read).

    Why: until a command is started, sshd leaves Nagle on. Its channel-open confirmation then waits for our ACK
    of the previous packet, and Linux delays that ACK by 40 ms — measured in the lab as a 45 ms stall before the
    first command of every connection (strace: sshd waiting in ppoll for our exec request). The kernel drops
    quick-ACK mode by itself, hence re-arming it after every ``recv``. paramiko only needs a socket-like object.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)
        except OSError:
            pass
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


_KEYS: dict[tuple[Any, ...], Any] = {}  # (path, file identity, passphrase digest) -> loaded key
_KEYS_LOCK = threading.Lock()
_KEYS_MAX = 16


def _load_key(creds: Credentials, label: str) -> Any:
    """The private key of ``creds``, parsed (and decrypted) once per file version and passphrase per process.

    Why: a fan-out opens two or three connections per host, and decrypting an OpenSSH key with a passphrase runs
    bcrypt_pbkdf — measured 241 ms of CPU per load for a default ed25519 key (ssh-keygen -N), 0.17 ms for an
    unencrypted one. The cache key includes the file's inode, size and mtime, so a rotated key is read again,
    and a digest of the passphrase (never the passphrase itself), so a wrong one is never answered from cache.
    The decrypted key lives as long as this process — as the passphrase it is derived from already does."""
    import hashlib

    path = str(creds.private_key_path)
    passphrase = creds.private_key_passphrase.reveal() if creds.private_key_passphrase else None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AuthError(f"private key file {path} not found", target=label) from None
    except OSError as exc:
        raise AuthError(f"cannot load private key {path}: {type(exc).__name__}", target=label) from None
    digest = hashlib.sha256(passphrase.encode()).hexdigest() if passphrase else ""
    cache_key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, digest)
    with _KEYS_LOCK:
        key = _KEYS.get(cache_key)
    if key is not None:
        return key
    key = _read_key(path, passphrase, label)
    with _KEYS_LOCK:
        if len(_KEYS) >= _KEYS_MAX:
            _KEYS.clear()
        _KEYS[cache_key] = key
    return key


def _read_key(path: str, passphrase: str | None, label: str) -> Any:
    import paramiko

    try:
        return paramiko.PKey.from_path(  # cryptography wants bytes; the stubs say str
            path, password=passphrase.encode() if passphrase else None)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise AuthError(f"private key file {path} not found", target=label) from None
    except paramiko.PasswordRequiredException:
        raise AuthError(f"private key {path} is encrypted and no passphrase is configured", target=label) from None
    except (paramiko.SSHException, ValueError, TypeError, OSError) as exc:
        raise AuthError(f"cannot load private key {path}: {type(exc).__name__} (wrong passphrase or format?)",
                        target=label) from None


def open_session(target: Target, creds: Credentials, ctx: ConnectorContext) -> SshSession:
    """Connect to ``target.address:port`` — directly, or through its ``jump`` chain like OpenSSH ``ProxyJump``
    (ssh(1) -J: "connect to the target host by first making a ssh connection to the jump host ... and then
    establishing a TCP forwarding to the ultimate destination from there") — check every host key against its
    pins (a bastion's comes from the inventory, required), then authenticate."""
    port = target.port or 22
    label = target.name or target.address
    if len(creds.hops) != len(target.jump):
        raise AuthError(f"{label} is reached through {len(target.jump)} jump host(s) but {len(creds.hops)} "
                        "credential(s) were given for them", target=label)
    # Pins first: a malformed pin is refused before any connection is opened. A jump host's pin is the
    # inventory's key alone (required there): a known_hosts line for the same address must not widen what the
    # one machine every containment passes through may present.
    hop_pins = [hostkeys.pins_for(h.address, h.port, h.host_key, None) for h in target.jump]
    pins = hostkeys.pins_for(target.address, port, target.host_key, ctx.known_hosts)
    hops: list[Any] = []
    try:
        via: Any = None
        for hop, hop_creds, hop_pin in zip(target.jump, creds.hops, hop_pins, strict=True):
            sock = _open_sock(via, hop.address, hop.port, f"{label} via jump host {hop.name}", ctx)
            transport, _ = _login(sock, hop.address, hop.port, f"jump host {hop.name}", hop_pin, hop_creds,
                                  ctx, pin_required=True)
            hops.append(transport)
            via = transport
        sock = _open_sock(via, target.address, port, label, ctx)
        transport, decision = _login(sock, target.address, port, label, pins, creds, ctx)
    except BaseException:
        for t in reversed(hops):
            t.close()
        raise
    session = SshSession(target, creds, ctx, transport, port, trusted_new_key=decision == "trust-new")
    session.hops = hops
    return session


def _open_sock(via: Any, address: str, port: int, label: str, ctx: ConnectorContext) -> Any:
    """A TCP connection to ``address:port``: a socket, or a ``direct-tcpip`` channel through the previous hop
    (RFC 4254 7.2; sshd's ``AllowTcpForwarding`` must permit it on the bastion)."""
    if via is None:
        with mapped(label, "connect"):
            sock = socket.create_connection((address, port), timeout=ctx.connect_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _QuickAckSocket(sock)
    with mapped(label, "connect through the jump host"):
        return via.open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=ctx.connect_timeout)


def _login(sock: Any, address: str, port: int, label: str, pins: list[hostkeys.Pin], creds: Credentials,
           ctx: ConnectorContext, *, pin_required: bool = False) -> tuple[Any, str]:
    """Key exchange, host-key decision and authentication over ``sock``; returns (transport, decision)."""
    import paramiko

    try:
        with mapped(label, "key exchange"):
            transport = paramiko.Transport(sock)
    except BaseException:
        sock.close()
        raise
    try:
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = ctx.connect_timeout
        opts = transport.get_security_options()
        opts.kex = tuple(k for k in FAST_KEX if k in opts.kex) + tuple(k for k in opts.kex if k not in FAST_KEX)
        opts.ciphers = (tuple(c for c in FAST_CIPHERS if c in opts.ciphers)
                        + tuple(c for c in opts.ciphers if c not in FAST_CIPHERS))
        pinned_kinds = [p.kind for p in pins if p.kind in opts.key_types]
        opts.key_types = tuple(dict.fromkeys(pinned_kinds + list(opts.key_types)))
        with mapped(label, "key exchange"):
            transport.start_client(timeout=ctx.connect_timeout)
            if transport.host_key is None:  # start_client returns quietly when its timeout passes
                raise Timeout(f"{address}:{port} did not complete the SSH handshake within "
                              f"{ctx.connect_timeout:g} s", target=label)
            key = transport.get_remote_server_key()
        # A jump host's key is never trusted on first use: it is pinned in the inventory (or known_hosts).
        decision = hostkeys.decide(address, port, key.get_name(), key.asbytes(), pins,
                                   ctx.trust_unknown_host_key and not pin_required)
        with mapped(label, "authentication"):
            if creds.private_key_path:
                transport.auth_publickey(creds.username, _load_key(creds, label))
            elif creds.password:
                transport.auth_password(creds.username, creds.password.reveal())
            else:
                raise AuthError(f"no private key or password configured for {label}", target=label)
        if not transport.is_authenticated():
            raise AuthError(f"authentication to {address} failed", target=label)
        if decision == "trust-new":
            hostkeys.record_trusted(ctx.known_hosts, address, port, key.get_name(), key.asbytes())
    except BaseException as exc:
        transport.close()
        if hasattr(exc, "with_context"):
            exc.with_context(target=label, connector="ssh_linux")
        raise
    return transport, decision
