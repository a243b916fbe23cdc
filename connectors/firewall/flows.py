"""Established flows of blocked addresses: ending them after the block and reading back that none remain.

Why a mixin of its own: a stateful firewall checks a new rule only when a connection is set up, so flows
established before the block (the attacker's open shell, an implant's C2 channel) live on until cleared. Which
lines end them and how the table is read is per vendor; how they are sent is shared — one line per round trip
where a refused line must stop everything after it (a FortiGate ``clear`` without its filter ends every session),
typed ahead where each line is a complete command (``session_lines_independent``), and read-backs typed ahead
20 addresses per round trip. :class:`~connectors.firewall.dialect.Dialect` inherits it; dialects override the
``_session*`` hooks.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import ClassVar

from connectors.firewall.addresses import Network, to_text
from connectors.firewall.transport import Transport

__all__ = ["SessionTable"]


class SessionTable(Transport):
    """The session-table half of a dialect (see the module docstring), sending through its transport."""

    #: each session line is a complete command: a refused one changes nothing and does not change what the others
    #: do, so they are typed ahead (ASA ``clear conn``, PAN-OS ``clear session``, Junos ``clear … flow session``)
    session_lines_independent: ClassVar[bool] = False
    cleared: dict[str, int]

    # ----- established sessions ------------------------------------------------------------------------------
    def _session_lines(self, net: Network) -> list[str]:
        """Exec-mode commands ending the flows the device tracks with ``net`` at either end. Default: none —
        the dialect's block is a stateless filter that drops every packet of a flow, established or not."""
        return []

    def _session_lines_for(self, nets: Sequence[Network]) -> list[str]:
        """The session lines for several addresses (default: each one's, in order; a dialect may batch them)."""
        return [line for net in nets for line in self._session_lines(net)]

    def _sessions_left(self, net: Network) -> int | None:
        """Flows with ``net`` at either end the device still tracks (None: no table to read)."""
        return None

    def _cleared_count(self, line: str, out: str) -> int | None:
        """How many flows the session line ``line`` ended, read from its answer (None: the device does not say)."""
        return None

    def _session_count_lines(self, net: Network) -> list[str]:
        """Read-only lines whose answers :meth:`_session_count` turns into the flows ``net`` still has; a
        dialect that gives them gets its read-back typed ahead (default: none, :meth:`_sessions_left` is used)."""
        return []

    def _session_count(self, answers: list[str]) -> int:
        """Flows counted from the answers to :meth:`_session_count_lines` (same order). Called only for a dialect
        that gives those lines, so each such dialect must say how to read them (Cisco, Junos, PAN-OS do)."""
        raise NotImplementedError(f"{type(self).__name__} gives session-count lines but no _session_count to "
                                  "read their answers")

    @property
    def has_session_table(self) -> bool:
        return type(self)._sessions_left is not SessionTable._sessions_left or \
            type(self)._session_count_lines is not SessionTable._session_count_lines

    def _show_many(self, lines: list[str]) -> list[str]:
        """Exec/operational lines typed ahead in one write (answers without the prompt line, like :meth:`_show`)."""
        self.sent.extend(lines)
        self.reads.extend(lines)
        prompt = rf"{re.escape(self.conn.base_prompt)}[^\n]*[>#$\]]\s*$"
        return [a.rsplit("\n", 1)[0] if "\n" in a else "" for a in self._exchange(lines, prompt)]

    def clear_sessions(self, nets: Sequence[Network]) -> tuple[list[str], list[str]]:
        """End established flows of ``nets`` after the block is in effect (a stateful firewall checks a new
        rule only when a connection is set up). Stops at the first refused line — a refused session *filter*
        must never be followed by the clear, which without a filter clears every session on a FortiGate.
        Dialects whose session lines are each a complete command (``session_lines_independent``) have them
        typed ahead, 40 per round trip: a refused one changed nothing and is reported, the others stand."""
        sent: list[str] = []
        self.cleared = {}
        if self.session_lines_independent:
            return self._clear_typed_ahead(nets)
        for net in nets:
            for line in self._session_lines(net):
                out = self._guard(self._show, line)
                err = self._error_in(line, out)
                if err is not None:
                    return sent, [(f"established sessions of {to_text(net)} NOT cleared: {line!r} was refused "
                                   f"({err.message[:200]}); they end when idle or by hand")]
                sent.append(line)
                count = self._cleared_count(line, out)
                if count is not None:
                    self.cleared[to_text(net)] = self.cleared.get(to_text(net), 0) + count
        return sent, []

    def _clear_typed_ahead(self, nets: Sequence[Network]) -> tuple[list[str], list[str]]:
        sent: list[str] = []
        problems: list[str] = []
        pairs = [(net, line) for net in nets for line in self._session_lines(net)]
        for start in range(0, len(pairs), 40):
            chunk = pairs[start:start + 40]
            answers = self._guard(self._show_many, [line for _, line in chunk])
            for (net, line), out in zip(chunk, answers, strict=True):
                err = self._error_in(line, out)
                if err is not None:
                    problems.append(f"established sessions of {to_text(net)} NOT cleared: {line!r} was refused "
                                    f"({err.message[:200]}); they end when idle or by hand")
                    continue
                sent.append(line)
                count = self._cleared_count(line, out)
                if count is not None:
                    self.cleared[to_text(net)] = self.cleared.get(to_text(net), 0) + count
        return sent, problems

    def sessions_left(self, nets: Sequence[Network]) -> dict[str, int]:
        """``{address: flows still tracked}`` for dialects with a readable session table (typed ahead, 20
        addresses per round trip, where the dialect gives its count lines)."""
        out: dict[str, int] = {}
        if type(self)._session_count_lines is not SessionTable._session_count_lines:
            for start in range(0, len(nets), 20):
                group = nets[start:start + 20]
                per = [self._session_count_lines(net) for net in group]
                if not any(per):
                    continue   # a stateless dialect: no table to read
                answers = self._guard(self._show_many, [line for lines in per for line in lines])
                at = 0
                for net, lines in zip(group, per, strict=True):
                    out[to_text(net)] = self._session_count(answers[at:at + len(lines)])
                    at += len(lines)
            return out
        for net in nets:
            left = self._guard(self._sessions_left, net)
            if left is not None:
                out[to_text(net)] = left
        return out
