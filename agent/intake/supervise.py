"""Starting and stopping the daemon's HTTP front process (:mod:`agent.intake.front`) from the core.

The core owns the listening socket (bound before anything else, so the port is known and stays ours across a
front restart) and creates the link as a socketpair; the front inherits both by file descriptor. Nothing secret
goes through argv or the environment: the configuration, with the sources' resolved secrets, is the first
message on the link. :meth:`FrontProcess.start` returns once the front says it is serving, or raises.
"""

from __future__ import annotations

import socket
import subprocess
import sys

from agent.intake.wire import FROM_FRONT, VERSION, FrontConfig, LinkError, Ready, encode, recv_frame

__all__ = ["FrontProcess"]


class FrontProcess:
    """One front process at a time: its ``Popen`` and the core's end of its link."""

    def __init__(self, listen: socket.socket, config: FrontConfig, *, ready_timeout: float = 30.0) -> None:
        self.listen, self.config, self.ready_timeout = listen, config, ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.link: socket.socket | None = None

    def start(self) -> None:
        """Spawn a front, send it its configuration, wait for READY; RuntimeError when it does not come up."""
        core_end, front_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            fds = (self.listen.fileno(), front_end.fileno())
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent.intake.front", "--listen-fd", str(fds[0]), "--link-fd", str(fds[1])],
                pass_fds=fds, stdin=subprocess.DEVNULL)
        except BaseException:
            core_end.close()
            raise
        finally:
            front_end.close()
        try:
            core_end.settimeout(self.ready_timeout)
            core_end.sendall(encode(self.config.message()))
            ready = recv_frame(core_end, FROM_FRONT)
            if not isinstance(ready, Ready):
                raise LinkError(f"the HTTP front process answered {type(ready).__name__} instead of Ready")
            if ready.version != VERSION:
                raise LinkError(f"the HTTP front process speaks link version {ready.version}, the core {VERSION}")
            core_end.settimeout(None)
        except (OSError, EOFError, ValueError, RuntimeError) as exc:
            core_end.close()
            _stop(proc, 5.0)
            raise RuntimeError(f"the daemon's HTTP front process did not start ({type(exc).__name__}: {exc}; "
                               f"exit status {proc.poll()}); its output is above") from None
        self.proc, self.link = proc, core_end

    def terminate(self) -> None:
        """Ask the front to stop (SIGTERM): it stops accepting and finishes the requests in flight."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout: float) -> int | None:
        """Wait for the front to exit (killing it after ``timeout``); its exit status, None if there is none."""
        if self.proc is None:
            return None
        return _stop(self.proc, timeout, terminate=False)

    def stop(self, timeout: float = 15.0) -> int | None:
        """Terminate, wait, kill if needed, close the link (idempotent)."""
        code = _stop(self.proc, timeout) if self.proc is not None else None
        if self.link is not None:
            self.link.close()
        return code


def _stop(proc: subprocess.Popen[bytes], timeout: float, *, terminate: bool = True) -> int | None:
    if terminate and proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)
