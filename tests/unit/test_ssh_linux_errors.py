"""Every paramiko/socket exception ssh_linux can meet maps to the right connector error (and retry class)."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator

import paramiko
import pytest

from connectors.errors import AuthError, ConnectorError, HostKeyError, Rejected, Timeout, Unreachable
from connectors.ssh_linux import open_session
from connectors.ssh_linux.errors import map_exception
from connectors.types import ConnectorContext, Credentials, Secret, Target


def _timeout_banner_error() -> paramiko.SSHException:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError:
            raise paramiko.SSHException("Error reading SSH protocol banner")  # noqa: B904 - implicit chain, as paramiko
    except paramiko.SSHException as exc:
        return exc


KEY = paramiko.ECDSAKey.generate(bits=256)

TABLE: list[tuple[BaseException, type[ConnectorError]]] = [
    (paramiko.BadHostKeyException("h", KEY, KEY), HostKeyError),
    (paramiko.AuthenticationException("Authentication failed."), AuthError),
    (paramiko.PasswordRequiredException("Private key file is encrypted"), AuthError),
    (paramiko.BadAuthenticationType("Bad authentication type", ["publickey"]), AuthError),
    (paramiko.ssh_exception.PartialAuthentication(["password"]), AuthError),
    (paramiko.ssh_exception.UnableToAuthenticate("no"), AuthError),
    (paramiko.IncompatiblePeer("Incompatible ssh peer (no acceptable kex algorithm)"), Rejected),
    (paramiko.ChannelException(1, "Administratively prohibited"), Unreachable),
    (paramiko.SSHException("Error reading SSH protocol banner"), Unreachable),
    (_timeout_banner_error(), Timeout),
    (paramiko.SSHException("SSH session not active"), Unreachable),
    (paramiko.ssh_exception.MessageOrderError("out of order"), Unreachable),
    (paramiko.ssh_exception.NoValidConnectionsError({("10.0.0.1", 22): OSError(111, "refused")}), Unreachable),
    (EOFError(), Unreachable),
    (TimeoutError("timed out"), Timeout),
    (TimeoutError(), Timeout),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), Unreachable),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), Unreachable),
    (OSError(errno.EHOSTUNREACH, "No route to host"), Unreachable),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), Unreachable),
    (socket.gaierror(-2, "Name or service not known"), Unreachable),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), Unreachable),
]


class TestMappingTable:
    @pytest.mark.parametrize("exc,expected", TABLE, ids=lambda v: type(v).__name__ if isinstance(v, BaseException)
                             else v.__name__)
    def test_exception_maps_to_exact_class(self, exc: BaseException, expected: type[ConnectorError]) -> None:
        """Each library exception becomes exactly the expected connector error, with the target named."""
        mapped = map_exception(exc, target="victim", phase="connect")
        assert type(mapped) is expected
        assert "victim" in str(mapped)

    def test_transient_only_for_network_failures(self) -> None:
        """Auth, host-key and algorithm failures are permanent; network ones are retried."""
        for exc, expected in TABLE:
            assert map_exception(exc, target="t", phase="p").transient == issubclass(expected, Unreachable)

    def test_every_paramiko_exception_class_is_covered(self) -> None:
        """No paramiko exception class that exists is missing from the table (config/proxy/SFTP aside)."""
        unused = {"ConfigParseError", "ProxyCommandFailure", "CouldNotCanonicalize", "SFTPError"}
        classes = {n for n, c in vars(paramiko.ssh_exception).items()
                   if isinstance(c, type) and issubclass(c, BaseException)} - unused
        covered = {type(e).__name__ for e, _ in TABLE} | {"SSHException"}
        assert classes <= covered, classes - covered

    def test_connector_errors_pass_through(self) -> None:
        """An already-mapped error is returned unchanged."""
        err = AuthError("x")
        assert map_exception(err, target="t", phase="p") is err


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections but never says anything (a hung sshd)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def garbage_port() -> Iterator[int]:
    """A TCP port that answers like a web server and hangs up."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(2)
    sock.close()


def _open(port: int, timeout: float = 0.5) -> None:
    target = Target("loop", "host", "127.0.0.1", "ssh_linux", port=port, host_key="ssh-ed25519 AAAA")
    open_session(target, Credentials("root", password=Secret("x")), ConnectorContext(connect_timeout=timeout))


class TestRealFailures:
    def test_refused_port(self) -> None:
        """Nothing listening: Unreachable at once."""
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        start = time.monotonic()
        with pytest.raises(Unreachable) as err:
            _open(port)
        assert type(err.value) is Unreachable and time.monotonic() - start < 1

    def test_silent_server_times_out(self, silent_port: int) -> None:
        """A server that never sends its banner raises Timeout within about connect_timeout."""
        start = time.monotonic()
        with pytest.raises(Timeout):
            _open(silent_port, timeout=0.4)
        assert time.monotonic() - start < 2

    def test_non_ssh_server(self, garbage_port: int) -> None:
        """Something else on the port is Unreachable (negotiation failed), not a crash."""
        with pytest.raises(Unreachable, match="loop"):
            _open(garbage_port)
