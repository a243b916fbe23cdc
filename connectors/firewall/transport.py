"""How one configuration line reaches a firewall and how its answer is judged: the CLI transport of a dialect.

Why a module of its own (STYLE #2): :class:`~connectors.firewall.dialect.Dialect` holds the rules that keep a
device safe (read first, send only what is missing, stop at the first refusal, clean up, save); this mixin holds
the mechanics underneath — typing lines ahead over the netmiko session, splitting the answers, spotting the
vendor's error text, entering and leaving configuration mode, mapping driver exceptions to connector errors.
Vendor modules override single pieces (Junos/PAN-OS ``_enter``/``_leave``, the Linux dialect's ``_send_chunk``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from connectors.errors import ConnectorError
from connectors.firewall.channel import channel_closed, exchange
from connectors.firewall.errors import map_exception
from connectors.firewall.model import DeviceError

__all__ = ["Transport"]


class Transport:
    """The transport half of a dialect; the session (``conn``) and the bookkeeping lists come from the dialect."""

    error_re: ClassVar[re.Pattern[str]] = re.compile(r"(?m)^% Invalid input detected.*$")
    uses_config_mode: ClassVar[bool] = True
    config_prompt: ClassVar[str] = r"[#>]\s*$"
    conn: Any
    target: str
    timeout: float
    sent: list[str]     # every line sent, shows included
    reads: list[str]    # the read-only (show) commands among them

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ConnectorError:
            raise
        except Exception as exc:
            raise map_exception(exc, target=self.target) from exc

    # ----- transport helpers --------------------------------------------------------------------------------------
    def _show(self, command: str) -> str:
        """An exec/operational-mode command; its answer ends at the session's own prompt."""
        self.sent.append(command)
        self.reads.append(command)
        prompt = rf"{re.escape(self.conn.base_prompt)}[^\n]*[>#$\]]\s*$"
        answer = self._exchange([command], prompt)[0]
        return answer.rsplit("\n", 1)[0] if "\n" in answer else ""

    def _error_in(self, line: str, out: str) -> DeviceError | None:
        """The device's refusal of ``line`` found in its answer ``out``, or None when it was accepted."""
        if self.error_re.search(out):
            return DeviceError(line, " ".join(out.split())[:400])
        return None

    def _send_config(self, line: str) -> str:
        out = self._send_chunk([line])[0]
        err = self._error_in(line, out)
        if err is not None:
            raise err
        return out

    def _send_chunk(self, lines: list[str]) -> list[str]:
        """Send lines and return each one's answer. Several lines are typed ahead in one write (the way
        netmiko's ``send_config_set`` does) and the answers are split at each line's echo; a line's answer
        ends where the next echo starts, the last one at the configuration prompt."""
        self.sent.extend(lines)
        return self._exchange(lines, self.config_prompt)

    def _exchange(self, lines: list[str], prompt: str, timeout: float | None = None) -> list[str]:
        return exchange(self.conn, lines, prompt, timeout or self.timeout)

    def _channel_closed(self) -> bool:
        return channel_closed(self.conn)

    def _enter(self) -> None:
        if self.uses_config_mode:
            self.conn.config_mode()

    def _leave(self) -> None:
        if self.uses_config_mode and not self._channel_closed():
            try:
                self.conn.exit_config_mode()
            except Exception:  # noqa: BLE001, S110 - a dead session cannot be in config mode any more; the original error matters
                pass

    def disconnect(self) -> None:
        """Leave the device (the driver's own cleanup by default; just close a session the device dropped)."""
        if self._channel_closed():
            self.conn.paramiko_cleanup()
        else:
            self.conn.disconnect()
