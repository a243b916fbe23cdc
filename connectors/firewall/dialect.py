"""The shared half of every firewall dialect: read state, send lines one by one, journal, clean up, persist.

Why one class with small hooks (STYLE #2): the rules that keep a device safe are the same on every vendor —
read the device before changing it, send only what is missing, stop at the first line the device refuses, record
exactly which lines it accepted, take them back out again, always leave configuration mode, save once per
session. Those live here once in :meth:`Dialect.block`/:meth:`Dialect.unblock`/:meth:`Dialect.persist`; a vendor
module only says *which* lines (``_scaffold_steps``, ``_add_steps``, ``_remove_steps``), how to read state
(``_read_state``) and how its CLI reports errors (``error_re``). The shared vocabulary (:class:`Step`,
:class:`DeviceState`, ...) lives in :mod:`connectors.firewall.model`, the line-by-line CLI mechanics in
:mod:`connectors.firewall.transport`, established-flow clearing in :mod:`connectors.firewall.flows`.

Timeouts with unknown outcome (ARCHITECTURE lesson #6): a change interrupted by a timeout or a dropped session
may or may not have landed. Nothing here retries blindly: every ``block``/``unblock`` starts by *reading the
device's state* and computes the lines still needed from it, so the engine's retry after a ``Timeout`` (which it
precedes with ``verify``) re-reads the device and sends only what is actually missing. The error raised carries
``detail["outcome"] = "unknown"`` and the lines already accepted, so the journal says what may have been applied.
"""

from __future__ import annotations

import abc
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from connectors.errors import Busy, ConnectorError, InvalidInput, Rejected, Timeout
from connectors.firewall.addresses import Network, covered_by, to_text
from connectors.firewall.channel import PartialAnswer
from connectors.firewall.errors import map_exception
from connectors.firewall.flows import SessionTable
from connectors.firewall.model import GROUP, NAME_RE, RULE, ChangeReport, DeviceError, DeviceState, Step

__all__ = ["Dialect"]

class Dialect(SessionTable, abc.ABC):
    """Base dialect. Subclasses set the class attributes and implement the ``_``-hooks; nothing else."""

    device_type: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    families: ClassVar[frozenset[int]] = frozenset({4, 6})
    option_names: ClassVar[tuple[str, ...]] = ()
    required_options: ClassVar[tuple[str, ...]] = ()
    pipeline: ClassVar[int] = 50    # lines typed ahead per round trip (1 = wait for each answer)
    #: whether the scaffold always drops traffic *to* the blocked addresses too (outbound call-backs, C2)
    blocks_outbound: ClassVar[bool] = False
    #: the option naming where outbound traffic is filtered, for dialects whose outbound rule needs a place
    #: the inventory must name (ASA/IOS ``acl_out``, Junos ``filter_out``); None: nothing to name
    outbound_option: ClassVar[str | None] = None
    #: device answers meaning "someone else holds the configuration" (a lock, other admins' pending edits):
    #: raised as :class:`Busy` (transient, nothing changed) instead of :class:`Rejected`
    busy_re: ClassVar[re.Pattern[str] | None] = None

    def __init__(self, conn: Any, options: Mapping[str, Any], *, target: str = "device",
                 timeout: float = 30.0) -> None:
        self.conn = conn
        self.options = dict(options)
        self.target = target
        self.timeout = timeout
        self.login: str | None = None  # the login changes are recorded under (preview without a session)
        self.journal: list[str] = []   # every configuration line the device accepted in this session
        self.sent: list[str] = []      # every line sent, shows included (for debugging and tests)
        self.reads: list[str] = []     # the read-only (show) commands among them
        self._cached: tuple[float, DeviceState] | None = None
        self.cleared: dict[str, int] = {}   # flows the last clear_sessions ended, per address (where counted)

    # ----- options -----------------------------------------------------------------------------------------
    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        """Option values end up on the CLI too: names must match :data:`NAME_RE`."""
        for key in cls.required_options:
            if not options.get(key):
                raise InvalidInput(f"options.{key}: required for device_type {cls.device_type!r}",
                                   detail={"field": f"options.{key}"})
        for key in cls.option_names:
            value = options.get(key)
            if value is not None and (not isinstance(value, str) or not NAME_RE.match(value)):
                raise InvalidInput(f"options.{key}: {value!r} is not a valid name",
                                   detail={"field": f"options.{key}", "value": str(value)[:64]})

    @classmethod
    def outbound_for(cls, options: Mapping[str, Any]) -> bool:
        """Whether a block with these options also drops traffic *to* the addresses (default: the class says)."""
        return cls.blocks_outbound or bool(cls.outbound_option and options.get(cls.outbound_option))

    @property
    def outbound(self) -> bool:
        return type(self).outbound_for(self.options)

    # ----- shared public interface ---------------------------------------------------------------------------
    def list_blocked(self) -> list[Network]:
        return list(self.read_state().members)

    def read_state(self, reuse: bool = False) -> DeviceState:
        """Read the device. ``reuse``: accept the state read moments ago in this session if nothing was sent
        since (snapshot → apply in one session); verification always reads afresh."""
        if reuse and self._cached is not None and time.monotonic() - self._cached[0] < 10.0:
            return self._cached[1]
        state: DeviceState = self._guard(self._read_state)
        own = self._guard(self._own_addresses)
        if own is not None:
            state.facts["own"] = own
        self._cached = (time.monotonic(), state)
        return state

    def _own_addresses(self) -> list[str] | None:
        """The device's own interface addresses (text), read from the device; None: this dialect cannot."""
        return None

    def _check_own(self, todo: Sequence[Network], state: DeviceState) -> None:
        """Refuse a block that contains one of the device's own addresses (it would cut the device off itself);
        the engine passes the management address already, this catches the others (other interfaces)."""
        for text in state.facts.get("own") or []:
            own = ipaddress.ip_address(text)
            for net in todo:
                if net.version == own.version and own in net:
                    raise InvalidInput(f"addresses: {to_text(net)!r} contains {self.target}'s own address {own}; "
                                       "a device never blocks itself", target=self.target,
                                       detail={"field": "addresses", "value": to_text(net), "reason": "own_address"})

    def verify(self, addrs: Sequence[Network]) -> tuple[bool, list[str], list[str], DeviceState]:
        """(all blocked and rule in place, blocked, missing, state) — read from the device, never assumed."""
        state = self.read_state()
        blocked = [to_text(a) for a in addrs if covered_by(a, state.members)]
        missing = [to_text(a) for a in addrs if not covered_by(a, state.members)]
        return (not missing and state.scaffold), blocked, missing, state

    def _block_plan(self, addrs: Sequence[Network], state: DeviceState) -> tuple[list[Step], ChangeReport]:
        """The exact lines a block sends on a device in ``state`` (shared by :meth:`block` and the preview)."""
        todo = [a for a in addrs if not covered_by(a, state.members)]
        report = ChangeReport(changed=[to_text(a) for a in todo],
                              unchanged=[to_text(a) for a in addrs if a not in todo])
        steps: list[Step] = []
        if not state.scaffold:
            steps += self._scaffold_steps(state)
            report.scaffold_created = True
        if todo:
            self._check_own(todo, state)
            self._check_conflicts(todo, state)
            steps += self._add_steps(todo, state)
        return steps, report

    def _unblock_plan(self, addrs: Sequence[Network], state: DeviceState) -> tuple[list[Step], ChangeReport]:
        todo = [a for a in addrs if a in state.members]
        report = ChangeReport(changed=[to_text(a) for a in todo],
                              unchanged=[to_text(a) for a in addrs if a not in todo])
        for a in addrs:
            if a not in todo and covered_by(a, state.members):
                report.warnings.append(f"{to_text(a)} stays blocked by a broader entry of {GROUP}")
        return (self._remove_steps(todo, state) if todo else []), report

    def block(self, addrs: Sequence[Network]) -> ChangeReport:
        state = self.read_state(reuse=True)
        steps, report = self._block_plan(addrs, state)
        todo = report.changed
        if steps or state.facts.get("needs_persist"):
            report.applied_lines, report.persist_lines = self._change(steps)
        if steps and todo:
            nets = [a for a in addrs if to_text(a) in set(todo)]
            report.session_lines, problems = self.clear_sessions(nets)
            report.sessions_cleared = dict(self.cleared)
            report.warnings += problems
        note = self.persistence_note()
        if note and (todo or state.members):
            report.warnings.append(note)
        return report

    def persistence_note(self) -> str | None:
        """What a responder must know about the block surviving a reboot (None: the device saves it)."""
        return None

    def unblock(self, addrs: Sequence[Network]) -> ChangeReport:
        state = self.read_state(reuse=True)
        steps, report = self._unblock_plan(addrs, state)
        if steps or state.facts.get("needs_persist"):
            report.applied_lines, report.persist_lines = self._change(steps)
        return report

    # ----- the one place lines are sent ------------------------------------------------------------------------
    def _change(self, steps: list[Step]) -> tuple[list[str], list[str]]:
        self._cached = None
        applied: list[Step] = []
        persisted: list[str] = []

        def detail(**extra: Any) -> dict[str, Any]:
            return {"applied_lines": [s.line for s in applied], **extra}

        try:
            self._enter()
            try:
                for chunk in self._chunks_of(steps):
                    failed: DeviceError | None = None
                    lost: PartialAnswer | None = None
                    try:
                        answers = self._send_chunk([st.line for st in chunk])
                    except PartialAnswer as exc:
                        answers, lost = exc.answers, exc
                    for step, out in zip(chunk, answers, strict=False):
                        err = self._error_in(step.line, out)
                        if err is None:
                            applied.append(step)
                            self.journal.append(step.line)
                            _failpoint(f"batch-after-item:{len(applied)}")
                        elif failed is None:
                            failed = err
                    if failed is not None:
                        raise failed
                    if lost is not None:
                        raise lost.cause or Timeout(str(lost), target=self.target)
                persisted += self._finish(applied)
            except DeviceError as err:
                cleanup = self._cleanup(applied)
                if self.busy_re is not None and self.busy_re.search(err.message):
                    raise Busy(f"{self.target} is held by another administrator ({err.line!r}: {err.message}); "
                               "nothing of theirs was committed or discarded — retry when they are done",
                               target=self.target, detail=detail(failed_line=err.line, device_message=err.message,
                                                                 cleanup=cleanup)) from None
                raise Rejected(f"{self.target} refused {err.line!r}: {err.message}", target=self.target,
                               detail=detail(failed_line=err.line, device_message=err.message,
                                             cleanup=cleanup)) from None
            finally:
                self._leave()
            persisted += self._save()
        except ConnectorError as err:
            err.detail.setdefault("applied_lines", [s.line for s in applied])
            if isinstance(err, Timeout):
                err.detail.setdefault("outcome", "unknown")
                err.detail.setdefault("hint", "read the device state (verify) before retrying")
            raise
        except Exception as exc:
            if isinstance(exc, PartialAnswer) and exc.cause is None:
                raise Timeout(f"{self.target}: {exc}", target=self.target, detail=detail(
                    outcome="unknown", hint="read the device state (verify) before retrying")) from exc
            if isinstance(exc, PartialAnswer):
                exc = exc.cause  # type: ignore[assignment]
            raise map_exception(exc, target=self.target, detail=detail(
                outcome="unknown", hint="read the device state (verify) before retrying")) from exc
        return [s.line for s in applied], persisted

    def _chunks_of(self, steps: list[Step]) -> list[list[Step]]:
        chunks: list[list[Step]] = []
        for step in steps:
            if not chunks or step.barrier or len(chunks[-1]) >= max(1, self.pipeline):
                chunks.append([])
            chunks[-1].append(step)
        return chunks

    def _cleanup(self, applied: list[Step]) -> dict[str, Any]:
        """Best-effort removal of accepted lines, newest first; records what worked and what the device said."""
        done: list[str] = []
        errors: list[str] = []
        try:
            self._recover()
            for line in self._discard(applied):
                try:
                    self._send_config(line)
                    done.append(line)
                except DeviceError as err:
                    errors.append(f"{line}: {err.message}")
        except Exception as exc:  # noqa: BLE001 - the cleanup itself must never hide the original refusal
            errors.append(f"cleanup aborted: {type(exc).__name__}: {str(exc)[:120]}")
        return {"lines": done, "errors": errors, "complete": not errors}

    # ----- hooks with defaults -----------------------------------------------------------------------------------
    def _check_conflicts(self, todo: list[Network], state: DeviceState) -> None:
        """Raise Rejected when the device cannot take these entries as they are (default: it always can)."""

    def _finish(self, applied: list[Step]) -> list[str]:
        """Still in config mode after the lines: commit on candidate-config platforms."""
        return []

    def _save(self) -> list[str]:
        """After leaving config mode: write the running config to startup where that is a separate step."""
        return []

    def _recover(self) -> None:
        """After a refusal: get back to the top configuration level before cleaning up."""

    def _discard(self, applied: list[Step]) -> list[str]:
        """Lines that take ``applied`` back out (default: their undo lines, newest first)."""
        return [line for step in reversed(applied) for line in step.undo]

    # ----- hooks every dialect implements -------------------------------------------------------------------------
    @abc.abstractmethod
    def _read_state(self) -> DeviceState:
        """Read the group's members and whether the rule references it (read-only)."""

    @abc.abstractmethod
    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        """Lines creating the group (with placeholder) and the deny rule at the top."""

    @abc.abstractmethod
    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        """Lines adding ``todo`` to the group."""

    @abc.abstractmethod
    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        """Lines removing ``todo`` from the group (never the scaffold)."""

    # ----- dry run --------------------------------------------------------------------------------------------
    @classmethod
    def preview(cls, options: Mapping[str, Any], addrs: Sequence[Network], remove: bool = False,
                state: DeviceState | None = None, login: str | None = None) -> list[str]:
        """Exactly the lines :meth:`block` (or :meth:`unblock`) sends to a device in ``state`` — the state read
        by the read-only resolve step (docs/architecture.md, decision 1). Without a state (``--offline``) the
        state-dependent lines are shown as conditional ones (:meth:`offline_preview`)."""
        d = cls(None, options)
        d.login = login
        if state is None:
            return d.offline_preview(addrs, remove)
        steps, report = d._unblock_plan(addrs, state) if remove else d._block_plan(addrs, state)
        if not steps and not state.facts.get("needs_persist"):
            return []
        sessions = [] if remove or not steps else d._session_lines_for(
            [a for a in addrs if to_text(a) in set(report.changed)])
        return [s.line for s in steps] + d._persist_preview(bool(steps)) + sessions

    #: facts of a device whose state is unknown: placeholders make the state-dependent lines visible
    OFFLINE_FACTS: ClassVar[dict[str, Any]] = {}

    def offline_preview(self, addrs: Sequence[Network], remove: bool) -> list[str]:
        """No device read (``--dry-run --offline``): the lines for a device that has none of our objects yet,
        each state-dependent line marked with its condition; lines with ``<…>`` are filled in from the device."""
        if remove:
            state = DeviceState(members=list(addrs), group_exists=True, rule_in_place=True)
            return [f"if {to_text(a)} is in {GROUP}: " + s.line for a in addrs for s in self._remove_steps([a], state)
                    ] + [f"after a change: {line}" for line in self._persist_preview(True)]
        state = DeviceState(facts={"acl_exists": True, "filter_exists": True, "next_id": "<next free id>",
                                   **self._offline_facts()})
        scaffold = [f"if {GROUP}/{RULE} are not in place yet: {s.line}" for s in self._scaffold_steps(state)]
        adds = [f"if not already blocked: {s.line}" for s in self._add_steps(list(addrs), state)]
        sessions = [f"if newly blocked: {line}" for line in self._session_lines_for(list(addrs))]
        return (["(offline: the device was not read; conditional lines are sent only when the device needs them)"]
                + scaffold + adds + [f"after a change: {line}" for line in self._persist_preview(True)] + sessions)

    def _offline_facts(self) -> dict[str, Any]:
        return dict(self.OFFLINE_FACTS)

    def _persist_preview(self, applied: bool) -> list[str]:
        """The commit/save lines sent after the change lines (``applied``: some change line was sent)."""
        return []


def _failpoint(name: str) -> None:
    """The agent's crash-test hooks (agent.failpoints): ``batch-after-item:K`` stops the run right after the
    device accepted the K-th configuration line of a batch. Absent when the connector runs without the agent."""
    try:
        from agent.failpoints import failpoint
    except ImportError:  # pragma: no cover - the connector used as a library
        return
    failpoint(name)
