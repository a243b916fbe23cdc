"""A stateful in-memory connector for engine tests: it keeps a per-target "firewall" and can inject faults.

It is a test double for the *targets*, not for the engine: the engine under test journals, retries, verifies,
reconciles and undoes against state the tests can inspect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from connectors.base import ActionHooks, ConnectorBase
from connectors.errors import AuthError, InvalidInput, Timeout, Unreachable
from connectors.types import (
    ActionResult,
    ActionSpec,
    ConnectorContext,
    Credentials,
    Snapshot,
    Target,
    Verification,
)


@dataclass
class FakeWorld:
    isolated: dict[str, bool] = field(default_factory=dict)
    rules: dict[str, str] = field(default_factory=dict)  # target -> "baseline ruleset"
    applies: dict[str, int] = field(default_factory=dict)
    opens: int = 0
    fail_open: dict[str, list[type[Exception]]] = field(default_factory=dict)  # target -> errors to raise in order
    fail_apply: dict[str, list[type[Exception]]] = field(default_factory=dict)
    timeout_after_apply: set[str] = field(default_factory=set)
    crash_after_apply: set[str] = field(default_factory=set)  # raise SystemExit-like BaseException
    # the connection drops after the change was sent: "half" = part of it landed and the host stays unreachable
    # (until the test removes it from `down`), "all" = all of it landed and the host is still reachable
    reset_after_apply: dict[str, str] = field(default_factory=dict)
    down: set[str] = field(default_factory=set)  # targets that cannot be reached at all (open raises)
    snapshots: dict[str, int] = field(default_factory=dict)
    # ``deprivilege``: a host's privileged groups (an effect in parts, like AD's remove_privileged_groups)
    groups: dict[str, set[str]] = field(default_factory=dict)
    group_down: set[str] = field(default_factory=set)  # re-adding one of these raises Unreachable (sent nothing)
    crash_after_restores: int = 0  # the undo crashes once it re-added this many groups (0: never)


class Crash(BaseException):
    """Simulates the process dying between apply and verify."""


class FakeSession:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeConnector(ConnectorBase):
    name: ClassVar[str] = "ssh_linux"
    host_os: ClassVar[tuple[str, ...]] = ("linux",)
    world: ClassVar[FakeWorld] = FakeWorld()
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "isolate": ActionSpec("isolate", "isolate the host", "host", active_as="isolated", blast="hosts"),
        "capture_evidence": ActionSpec("capture_evidence", "collect state", "host", reversible=False,
                                       mutating=False),
        "fail_step": ActionSpec("fail_step", "always fails", "host"),
        "deprivilege": ActionSpec("deprivilege", "leave every privileged group", "host", active_as="deprivileged",
                                  undo_in_parts=True),
    }

    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> FakeSession:
        self.world.opens += 1
        if target.name in self.world.down:
            raise Unreachable(f"no route to {target.address}")
        errors = self.world.fail_open.get(target.name)
        if errors:
            raise errors.pop(0)(f"injected failure opening {target.address}")
        return FakeSession(target)

    def _validate_isolate(self, target: Target, args: Mapping[str, Any]) -> None:
        if "bad" in str(args.get("confirm_seconds", "")):
            raise InvalidInput("confirm_seconds: bad value")

    def _preview_isolate(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"fake isolate {target.address} keep {','.join(ctx.management_addresses)}"]

    def _preview_capture_evidence(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return ["ps", "ss"]

    def _preview_fail_step(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return ["false"]

    def _snapshot_isolate(self, s: FakeSession, args: Mapping[str, Any]) -> Snapshot:
        t = s.target.name
        self.world.snapshots[t] = self.world.snapshots.get(t, 0) + 1
        return Snapshot({"ruleset": self.world.rules.get(t, "baseline"),
                         "was_isolated": self.world.isolated.get(t, False)})

    def _apply_isolate(self, s: FakeSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        t = s.target.name
        errors = self.world.fail_apply.get(t)
        if errors:
            raise errors.pop(0)(f"injected apply failure on {t}")
        if self.world.isolated.get(t):
            return ActionResult(changed=False, summary="already isolated")
        if t in self.world.down:
            raise Unreachable(f"connection to {t} lost")
        reset = self.world.reset_after_apply.pop(t, None)
        if reset == "half":  # the first half of the change landed, then the host went away
            self.world.rules[t] = "half-applied"
            self.world.applies[t] = self.world.applies.get(t, 0) + 1
            self.world.down.add(t)
            raise Unreachable("connection reset by peer after the ruleset was sent")
        self.world.isolated[t] = True
        self.world.rules[t] = "containment"
        self.world.applies[t] = self.world.applies.get(t, 0) + 1
        if t in self.world.timeout_after_apply:
            self.world.timeout_after_apply.discard(t)
            raise Timeout("no answer after sending the ruleset")
        if t in self.world.crash_after_apply:
            raise Crash()
        if reset == "all":
            raise Unreachable("connection reset by peer after the ruleset was sent")
        return ActionResult(changed=True, summary="isolated", details={"tool": "fake"})

    def _verify_isolate(self, s: FakeSession, args: Mapping[str, Any]) -> Verification:
        if s.target.name in self.world.down:
            raise Unreachable(f"connection to {s.target.name} lost")
        on = self.world.isolated.get(s.target.name, False)
        return Verification(in_effect=on, summary="isolated" if on else "not isolated")

    def _undo_isolate(self, s: FakeSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        t = s.target.name  # like the real connectors: restore the snapshot's state, whatever is there now
        if not self.world.isolated.get(t) and self.world.rules.get(t, "baseline") == snap.data["ruleset"]:
            return ActionResult(changed=False, summary="not isolated")
        self.world.isolated[t] = False
        self.world.rules[t] = snap.data["ruleset"]
        return ActionResult(changed=True, summary="released")

    def _apply_capture_evidence(self, s: FakeSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return ActionResult(changed=False, summary="evidence captured",
                            details={"evidence": {"processes.txt": "init\nsshd\n"}})

    def _apply_fail_step(self, s: FakeSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        from connectors.errors import Rejected
        raise Rejected("device said: % Invalid input detected")

    def _verify_fail_step(self, s: FakeSession, args: Mapping[str, Any]) -> Verification:
        return Verification(False, "never")

    def _snapshot_deprivilege(self, s: FakeSession, args: Mapping[str, Any]) -> Snapshot:
        return Snapshot({"to_remove": sorted(self.world.groups.get(s.target.name, set()))})

    def _apply_deprivilege(self, s: FakeSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        had = self.world.groups.get(s.target.name, set())
        self.world.groups[s.target.name] = set()
        return ActionResult(changed=bool(had), summary=f"removed from {len(had)} group(s)")

    def _verify_deprivilege(self, s: FakeSession, args: Mapping[str, Any]) -> Verification:
        left = self.world.groups.get(s.target.name, set())
        return Verification(in_effect=not left, summary=f"in {sorted(left)}" if left else "in no privileged group")

    def _undo_deprivilege(self, s: FakeSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        """Like AD's undo_groups: re-read, re-add only the recorded groups missing now, one modify each."""
        now = self.world.groups.setdefault(s.target.name, set())
        restored = []
        for group in snap.data["to_remove"]:
            if group in now:
                continue
            if group in self.world.group_down:
                raise Unreachable(f"connection lost re-adding {group}")
            now.add(group)
            restored.append(group)
            if len(restored) == self.world.crash_after_restores:
                raise Crash()
        return ActionResult(changed=bool(restored), summary=f"re-added to {restored}")

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method carries out which step of which action (the table ConnectorBase dispatches from)."""
        return {
            "isolate": ActionHooks(apply=self._apply_isolate, verify=self._verify_isolate,
                                   validate=self._validate_isolate, preview=self._preview_isolate,
                                   snapshot=self._snapshot_isolate, undo=self._undo_isolate),
            "capture_evidence": ActionHooks(apply=self._apply_capture_evidence,
                                            preview=self._preview_capture_evidence),
            "fail_step": ActionHooks(apply=self._apply_fail_step, verify=self._verify_fail_step,
                                     preview=self._preview_fail_step),
            "deprivilege": ActionHooks(apply=self._apply_deprivilege, verify=self._verify_deprivilege,
                                       snapshot=self._snapshot_deprivilege, undo=self._undo_deprivilege,
                                       preview=lambda target, args, ctx: ["leave every privileged group"]),
        }


__all__ = ["AuthError", "Crash", "FakeConnector", "FakeWorld", "Timeout", "Unreachable"]
