"""The firewall dialects' part of the connector conformance suite: the same checks for every dialect.

A *harness* gives the suite one device — a vendor simulator or the lab's real Linux router — as the engine sees
it (Target, credentials, context) plus a way to open a session with wrong credentials or to a dead port. Each
``check_*`` function is one contract every dialect must meet; ``tests/conformance/test_firewall.py`` runs all
of them against all harnesses, and another suite (the general connector conformance suite) can import them.

Contracts: idempotent block/unblock; undo restores the snapshot; the preview from the resolve step equals what
is sent; verify reads the device back (never assumes); errors map to the connector error tree.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from connectors.errors import AuthError, InvalidInput, Unreachable
from connectors.firewall import FirewallConnector
from connectors.types import ConnectorContext, Credentials, Secret, Target

__all__ = ["CHECKS", "Harness"]


@dataclass
class Harness:
    """One device under test."""

    name: str
    target: Target
    creds: Credentials
    ctx: ConnectorContext
    addresses: list[str]                       # blockable here (allow_private is passed for lab ranges)
    around: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    conn: FirewallConnector | None = None

    def __post_init__(self) -> None:
        self.conn = self.conn or FirewallConnector()

    def args(self, *addrs: str) -> dict[str, Any]:
        return {"addresses": list(addrs), "allow_private": True, "protected": ["192.0.2.10/32"]}

    @contextlib.contextmanager
    def session(self, **changes: Any) -> Iterator[Any]:
        target = replace(self.target, **{k: v for k, v in changes.items() if k != "creds"})
        with self.around():
            s = self.connector.open(target, changes.get("creds", self.creds), self.ctx)
            try:
                yield s
            finally:
                s.close()

    @property
    def connector(self) -> FirewallConnector:
        assert self.conn is not None
        return self.conn

    def run(self, action: str, args: dict[str, Any]) -> tuple[Any, Any, Any]:
        self.connector.validate(self.target, action, args)
        with self.session() as s:
            snap = self.connector.snapshot(s, action, args)
            result = self.connector.apply(s, action, args, snap)
            check = self.connector.verify(s, action, args)
        return snap, result, check

    def undo(self, action: str, args: dict[str, Any], snap: Any) -> tuple[Any, Any]:
        with self.session() as s:
            result = self.connector.undo(s, action, args, snap)
            check = self.connector.verify(s, action, args)
        return result, check

    def blocked(self) -> set[str]:
        with self.session() as s:
            result = self.connector.apply(s, "list_blocked", {}, self.connector.snapshot(s, "list_blocked", {}))
        return set(result.details["blocked"])


def check_idempotent_block_unblock(h: Harness) -> None:
    args = h.args(*h.addresses)
    _, first, check = h.run("block_ip", args)
    assert first.changed and check.in_effect, check.summary
    _, again, check = h.run("block_ip", args)
    assert not again.changed and again.details["applied_lines"] == [] and check.in_effect
    _, gone, check = h.run("unblock_ip", args)
    assert gone.changed and check.in_effect, check.summary
    _, again, check = h.run("unblock_ip", args)
    assert not again.changed and again.details["applied_lines"] == [] and check.in_effect


def check_undo_restores_snapshot(h: Harness) -> None:
    keep, ours = h.addresses[0], h.addresses[1:]
    h.run("block_ip", h.args(keep))
    before = h.blocked()
    snap, _, _ = h.run("block_ip", h.args(keep, *ours))
    assert set(snap.data["members"]) == before
    assert h.blocked() == before | set(ours)
    _, after = h.undo("block_ip", h.args(keep, *ours), snap)
    assert h.blocked() == before, "undo did not restore the members recorded in the snapshot"
    assert not after.in_effect   # the addresses this action added are gone again


def check_preview_equals_sent(h: Harness) -> None:
    args = h.args(*h.addresses)
    h.connector.validate(h.target, "block_ip", args)
    with h.session() as s:
        facts = h.connector.resolve(s, "block_ip", args)
        preview = h.connector.preview(h.target, "block_ip", args, h.ctx, facts=facts)
        result = h.connector.apply(s, "block_ip", args, h.connector.snapshot(s, "block_ip", args))
    sent = result.details["applied_lines"] + result.details["persist"] + result.details["sessions"]
    assert preview == sent


def check_verify_reads_back(h: Harness) -> None:
    """Verify reads the device: a block undone by another action is seen as not in effect."""
    args = h.args(*h.addresses)
    h.run("block_ip", args)
    h.run("unblock_ip", args)
    with h.session() as s:
        check = h.connector.verify(s, "block_ip", args)
    assert not check.in_effect and set(check.observed["missing"]) == set(h.addresses)


def check_errors_mapped(h: Harness) -> None:
    with pytest.raises(InvalidInput):
        h.connector.validate(h.target, "block_ip", h.args("10.0.0.1\nreload"))
    bad = Credentials(h.creds.username, Secret("wrong-password"), private_key_path=None)
    with pytest.raises(AuthError), h.session(creds=bad):
        pass
    with pytest.raises(Unreachable), h.session(port=1):
        pass


CHECKS: dict[str, Callable[[Harness], None]] = {
    "idempotent": check_idempotent_block_unblock, "undo_restores": check_undo_restores_snapshot,
    "preview_equals_sent": check_preview_equals_sent, "verify_reads_back": check_verify_reads_back,
    "errors_mapped": check_errors_mapped,
}
