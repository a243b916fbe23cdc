"""A third-party connector, as another project would ship it: blocks addresses on a "toybox" device.

It lives outside ``connectors/`` and is found only through the ``agent.connectors`` entry point of its own
distribution (tests/unit/test_third_party_connector.py writes that distribution's metadata). The device is a JSON
file (``options.state_file``) holding the blocked networks, so the test reads the device's state directly. It
declares its capabilities like any connector: it serves the inventory's ``devices`` section, its ``block_ip`` reads
"blocked" in ``agent status`` and ``unblock_ip`` lifts ``block_ip``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from connectors.base import ActionHooks, ConnectorBase
from connectors.errors import InvalidInput
from connectors.types import ActionResult, ActionSpec, ConnectorContext, Credentials, Snapshot, Target, Verification


class ToyboxSession:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[str]:
        return list(json.loads(self.path.read_text()).get("blocked", [])) if self.path.exists() else []

    def write(self, blocked: list[str]) -> None:
        self.path.write_text(json.dumps({"blocked": sorted(set(blocked))}))

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
            return [str(ipaddress.ip_network(str(a), strict=False)) for a in raw]
        except ValueError as exc:
            raise InvalidInput(f"addresses: {exc}") from None

    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> ToyboxSession:
        session = ToyboxSession(Path(str(target.options["state_file"])))
        session.target = target  # type: ignore[attr-defined]
        return session

    def _validate_block_ip(self, target: Target, args: Mapping[str, Any]) -> None:
        self._nets(target, args)

    _validate_unblock_ip = _validate_block_ip

    def _preview_block_ip(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"toybox add {n}" for n in self._nets(target, args)]

    def _preview_unblock_ip(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"toybox remove {n}" for n in self._nets(target, args)]

    def _snapshot_block_ip(self, s: ToyboxSession, args: Mapping[str, Any]) -> Snapshot:
        return Snapshot({"before": s.read()})

    _snapshot_unblock_ip = _snapshot_block_ip

    def _apply_block_ip(self, s: ToyboxSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        nets = self._nets(s.target, args)  # type: ignore[attr-defined]
        before = s.read()
        s.write(before + nets)
        return ActionResult(changed=bool(set(nets) - set(before)), summary=f"blocked {', '.join(nets)}")

    def _apply_unblock_ip(self, s: ToyboxSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        nets = self._nets(s.target, args)  # type: ignore[attr-defined]
        before = s.read()
        s.write([n for n in before if n not in nets])
        return ActionResult(changed=bool(set(nets) & set(before)), summary=f"unblocked {', '.join(nets)}")

    def _verify_block_ip(self, s: ToyboxSession, args: Mapping[str, Any]) -> Verification:
        nets = self._nets(s.target, args)  # type: ignore[attr-defined]
        return Verification(in_effect=set(nets) <= set(s.read()), summary="read the block list back")

    def _verify_unblock_ip(self, s: ToyboxSession, args: Mapping[str, Any]) -> Verification:
        nets = self._nets(s.target, args)  # type: ignore[attr-defined]
        return Verification(in_effect=not set(nets) & set(s.read()), summary="read the block list back")

    def _undo_block_ip(self, s: ToyboxSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        s.write(list(snap.data.get("before", [])))
        return ActionResult(changed=True, summary="restored the block list")

    _undo_unblock_ip = _undo_block_ip

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method carries out which step of which action (the table ConnectorBase dispatches from)."""
        return {
            "block_ip": ActionHooks(apply=self._apply_block_ip, verify=self._verify_block_ip,
                                    validate=self._validate_block_ip, preview=self._preview_block_ip,
                                    snapshot=self._snapshot_block_ip, undo=self._undo_block_ip),
            "unblock_ip": ActionHooks(apply=self._apply_unblock_ip, verify=self._verify_unblock_ip,
                                      validate=self._validate_unblock_ip, preview=self._preview_unblock_ip,
                                      snapshot=self._snapshot_unblock_ip, undo=self._undo_unblock_ip),
        }
