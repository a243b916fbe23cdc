"""A third-party connector, as another project would ship it: blocks addresses on a "toybox" device.

It lives outside ``connectors/`` and is found only through the ``agent.connectors`` entry point of its own
distribution (tests/unit/test_third_party_connector.py and tests/integration/conformance write that
distribution's metadata). The device is a JSON file (``options.state_file``) holding the blocked networks; the
connector talks to it in lines (``toybox add NET`` / ``toybox remove NET``), each appended to the device's log
(``<state_file>.log``) as the device receives it, so tests read both the state and what was sent. A file
``<state_file>.drop`` makes the device take the next line and then drop the connection (the conformance suite's
"dropped after write"). It declares its capabilities like any connector: it serves the inventory's ``devices``
section, its ``block_ip`` reads "blocked" in ``agent status`` and ``unblock_ip`` lifts ``block_ip``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from connectors.base import ActionHooks, ConnectorBase
from connectors.errors import AuthError, ConnectorError, InvalidInput, Unreachable
from connectors.types import ActionResult, ActionSpec, ConnectorContext, Credentials, Snapshot, Target, Verification

PASSWORD_OPTION = "password"  # the device's own password (options.password), as a real device would check it


class ToyboxSession:
    """The connection to one device: reads its list, sends it lines."""

    def __init__(self, target: Target, path: Path) -> None:
        self.target, self.path = target, path

    def read(self) -> list[str]:
        return list(json.loads(self.path.read_text()).get("blocked", [])) if self.path.exists() else []

    def send(self, line: str) -> None:
        """The device applies one line; with the drop fault armed it applies it and the connection dies."""
        verb, net = line.removeprefix("toybox ").split(" ", 1)
        blocked = self.read()
        blocked = sorted({*blocked, net}) if verb == "add" else [n for n in blocked if n != net]
        self.path.write_text(json.dumps({"blocked": blocked}))
        with self.path.with_name(self.path.name + ".log").open("a") as log:
            log.write(line + "\n")
        drop = self.path.with_name(self.path.name + ".drop")
        if drop.exists():
            drop.unlink()
            raise ConnectorError(f"the connection to {self.target.name} dropped after {line!r} was sent: "
                                 "the change may have been applied", target=self.target.name)

    def close(self) -> None:
        pass


class ToyboxConnector(ConnectorBase):
    name: ClassVar[str] = "toybox"
    inventory_section: ClassVar[str] = "devices"
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "block_ip": ActionSpec("block_ip", "add networks to the toybox block list", "device",
                               undo_description="remove what this action added", active_as="blocked"),
        "unblock_ip": ActionSpec("unblock_ip", "remove networks from the toybox block list", "device",
                                 undo_description="block them again", lifts="block_ip"),
    }

    @staticmethod
    def _nets(target: Target, args: Mapping[str, Any]) -> list[str]:
        if "state_file" not in target.options:
            raise InvalidInput("options.state_file: required for a toybox device", target=target.name)
        raw = args.get("addresses")
        if not isinstance(raw, list) or not raw:
            raise InvalidInput("addresses: a non-empty list is required")
        try:
            nets = [ipaddress.ip_network(str(a), strict=False) for a in raw]
            protected = [ipaddress.ip_network(str(p), strict=False) for p in args.get("protected", [])]
        except ValueError as exc:
            raise InvalidInput(f"addresses: {exc}") from None
        for net in nets:
            hit = next((p for p in protected if p.version == net.version and net.overlaps(p)), None)
            if hit is not None:
                raise InvalidInput(f"addresses: {net} covers the protected {hit}", target=target.name)
        return [str(n) for n in nets]

    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> ToyboxSession:
        expected = target.options.get(PASSWORD_OPTION)
        if expected is not None and (creds.password is None or creds.password.reveal() != expected):
            raise AuthError(f"{target.name}: the device refused the login of {creds.username!r}",
                            target=target.name)
        path = Path(str(target.options["state_file"]))
        if not path.parent.is_dir():  # the device is not there: nothing answers
            raise Unreachable(f"{target.name}: no toybox device at {path.parent}", target=target.name)
        return ToyboxSession(target, path)

    def _validate_block_ip(self, target: Target, args: Mapping[str, Any]) -> None:
        self._nets(target, args)

    def _validate_unblock_ip(self, target: Target, args: Mapping[str, Any]) -> None:
        self._nets(target, args)

    def _preview_block_ip(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"toybox add {n}" for n in self._nets(target, args)]

    def _preview_unblock_ip(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"toybox remove {n}" for n in self._nets(target, args)]

    def _snapshot(self, s: ToyboxSession, args: Mapping[str, Any]) -> Snapshot:
        return Snapshot({"before": s.read()})

    def _apply_block_ip(self, s: ToyboxSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        nets, before = self._nets(s.target, args), s.read()
        for n in nets:
            s.send(f"toybox add {n}")
        return ActionResult(changed=bool(set(nets) - set(before)), summary=f"blocked {', '.join(nets)}")

    def _apply_unblock_ip(self, s: ToyboxSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        nets, before = self._nets(s.target, args), s.read()
        for n in nets:
            s.send(f"toybox remove {n}")
        return ActionResult(changed=bool(set(nets) & set(before)), summary=f"unblocked {', '.join(nets)}")

    def _verify_block_ip(self, s: ToyboxSession, args: Mapping[str, Any]) -> Verification:
        nets = self._nets(s.target, args)
        return Verification(in_effect=set(nets) <= set(s.read()), summary="read the block list back")

    def _verify_unblock_ip(self, s: ToyboxSession, args: Mapping[str, Any]) -> Verification:
        nets = self._nets(s.target, args)
        return Verification(in_effect=not set(nets) & set(s.read()), summary="read the block list back")

    def _undo(self, s: ToyboxSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        """Back to the list the snapshot recorded: add what it held, remove what it did not."""
        before, now = set(snap.data.get("before", [])), set(s.read())
        lines = [f"toybox add {n}" for n in sorted(before - now)] + [f"toybox remove {n}" for n in sorted(now - before)]
        for line in lines:
            s.send(line)
        return ActionResult(changed=bool(lines), summary="restored the block list")

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method carries out which step of which action (the table ConnectorBase dispatches from)."""
        return {
            "block_ip": ActionHooks(apply=self._apply_block_ip, verify=self._verify_block_ip,
                                    validate=self._validate_block_ip, preview=self._preview_block_ip,
                                    snapshot=self._snapshot, undo=self._undo),
            "unblock_ip": ActionHooks(apply=self._apply_unblock_ip, verify=self._verify_unblock_ip,
                                      validate=self._validate_unblock_ip, preview=self._preview_unblock_ip,
                                      snapshot=self._snapshot, undo=self._undo),
        }
