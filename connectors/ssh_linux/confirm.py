"""Confirm-or-revert, the agent's half: prove a *new* management connection works, then cancel the dead-man timer.

Why a fresh SSH login and not just a TCP probe: isolation can break what a login needs (a domain-joined host that
can no longer reach its directory, PAM modules that call out) while the port still answers. Only a complete
login proves the agent can come back to release the host.

Why in parallel: opening that connection costs a key exchange, an authentication and ≈ 45 ms of sshd's own
post-login setup. All of it is started as soon as the ruleset is loaded and runs while the first session cuts
live flows and reads the rules back; the timer is cancelled through the new connection only after the caller has
judged the read-back (``finish(proceed=True)``), exactly as when the steps ran one after the other.

Why the confirmation reads the state back in the same command (issue 19, fan-out): the verify step that follows
needs the host's state *after* the timer was cancelled (an armed timer means "not confirmed"). Read here, through
the fresh connection, right after the cancel, it is remembered on the first session (nothing ran there since), so
verify reuses it instead of opening one more channel for the same ``ca_state`` (:func:`.state.read_state`).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from connectors.errors import ConnectorError
from connectors.ssh_linux.state import FirewallState, parse_state, split_then_read, then_read_script

if TYPE_CHECKING:
    from connectors.ssh_linux.session import SshSession

__all__ = ["FreshConfirmation"]


class FreshConfirmation:
    """A fresh connection opened in the background; :meth:`finish` runs the confirmation (or nothing) through it."""

    def __init__(self, session: SshSession, *, command: str = "true") -> None:
        self._session = session
        self._command = command  # deadman.confirm_command(token), or "true" when no timer is to be cancelled
        self._go = threading.Event()
        self._proceed = False
        self._output = ""
        self.state: FirewallState | None = None  # the host's state read right after the command
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"confirm-{session.label}", daemon=True)

    def start(self) -> FreshConfirmation:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            fresh = self._session.fresh()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by finish()
            self._error = exc
            return
        try:
            self._go.wait()
            if self._proceed:
                _, out, _ = fresh.run(then_read_script(self._command), timeout=10, check=True,
                                      what="fresh management connection")
                self._output, tail = split_then_read(out)
                state = parse_state(tail)
                self.state = None if state.failed else state  # unreadable: verify reads it again itself
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread by finish()
            self._error = exc
        finally:
            fresh.close()

    def finish(self, *, proceed: bool) -> str:
        """Let the background connection confirm (``proceed``) or just close; return the confirmation's output.

        Raises what opening or confirming raised (a :class:`ConnectorError` for anything the host caused).
        """
        self._proceed = proceed
        self._go.set()
        self._thread.join()
        if self._error is not None and proceed:
            raise self._error
        if proceed and self.state is not None:
            self._session.remember(self.state)
        return self._output

    def abandon(self) -> None:
        """Close the background connection without confirming (the caller is failing for another reason)."""
        try:
            self.finish(proceed=False)
        except ConnectorError:
            pass
