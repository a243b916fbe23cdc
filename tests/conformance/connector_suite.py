"""The connector conformance suite: the contract every registered connector meets, one set of checks for all.

napalm's idea: one suite, run against every driver, so a driver (and a newcomer writing one) knows exactly what
"works" means. A :class:`Rig` gives the suite one connector with its real server or double, as the engine sees it
(Target, credentials, context), one reversible action with valid arguments, and what only the double can tell:
the target's state read beside the connector, what reached the target, a way to drop the connection right after
the change was sent, and subjects the connector must refuse. ``tests/integration/conformance`` runs every check
against every connector the registry finds through its entry points (third-party ones included); the firewall
dialects add their own checks in ``firewall_suite.py``.

Contracts (docs/architecture.md, the nevers):

* capabilities: every declared action has its methods (``hooks()``), a changing one can be verified, a
  reversible one snapshotted and undone — and nothing undeclared is served;
* the plan is read-only: validate, preview and summarize open no connection; a resolve step changes nothing;
* protected subjects are refused by ``validate``, before any connection;
* a snapshot is taken read-only before apply, is plain data (journaled as JSON) and apply does not alter it;
  apply is idempotent; undo with that snapshot restores the target's state exactly;
* the preview is what is sent;
* a connection dropped after the change was sent is never a refusal (the engine then says ``in_doubt``), and
  the connector maps it to its error tree;
* a target where nothing answers is ``Unreachable`` (the error tree's "retry may help, nothing changed");
* secrets never appear in results, snapshots, verifications or exceptions (wrong password included).
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from agent.outcomes import REFUSALS
from connectors.base import ConnectorBase
from connectors.errors import AuthError, ConnectorError, InvalidInput, Unreachable
from connectors.types import ConnectorContext, Credentials, Secret, Snapshot, Target

__all__ = ["CHECKS", "Rig", "check_capabilities"]


def _exact(preview: list[str], sent: list[str]) -> None:
    assert preview == sent, "the preview is not what was sent"


@dataclass
class Rig:
    """One connector against its server or double."""

    connector: Any
    target: Target
    creds: Credentials
    ctx: ConnectorContext
    action: str                                    # a mutating, reversible action
    args: dict[str, Any]
    state: Callable[[], Any]                       # the target's state, read beside the connector
    sent: Callable[[], list[str]]                  # everything that reached the target so far, in order
    drop_after_write: Callable[[], contextlib.AbstractContextManager[Any]]
    refused: list[tuple[Target, dict[str, Any]]]   # protected targets / subjects: validate refuses them
    secrets: list[str] = field(default_factory=list)
    protected_elsewhere: str = ""                  # when ``refused`` is empty: where protection is enforced instead
    unreachable: Target | None = None              # the same target where nothing answers (a closed port)
    around: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    compare: Callable[[list[str], list[str]], None] = _exact  # (preview, sent lines) -> assertion

    @contextlib.contextmanager
    def session(self, creds: Credentials | None = None) -> Iterator[Any]:
        with self.around():
            s = self.connector.open(self.target, creds or self.creds, self.ctx)
            try:
                yield s
            finally:
                s.close()


# -- capabilities (no target needed) ---------------------------------------------------------------------------
def check_capabilities(conn: Any) -> None:
    """Declared actions == what the connector carries out, with the steps their declarations promise."""
    for method in ("validate", "preview", "summarize", "open", "snapshot", "apply", "verify", "undo"):
        assert callable(getattr(conn, method, None)), f"{conn.name}: no {method}()"
    assert conn.actions, f"{conn.name} declares no action"
    for name, spec in conn.actions.items():
        assert spec.name == name, f"{conn.name}: action {name!r} is declared as {spec.name!r}"
        assert not spec.lifts or spec.lifts in conn.actions, f"{conn.name}.{name} lifts unknown {spec.lifts!r}"
    if not isinstance(conn, ConnectorBase):
        return
    table = conn.hooks()
    assert set(table) == set(conn.actions), (f"{conn.name}: declared {sorted(conn.actions)} but carries out "
                                             f"{sorted(table)}")
    for name, spec in conn.actions.items():
        hooks = table[name]
        if spec.mutating:
            assert hooks.verify is not None, f"{conn.name}.{name} changes the target but cannot verify"
        if spec.mutating and spec.reversible:
            assert hooks.snapshot is not None and hooks.undo is not None, (
                f"{conn.name}.{name} is declared reversible but has no snapshot/undo")
    with pytest.raises(InvalidInput, match="has no action"):
        conn.validate(Target("x", "host", "192.0.2.1", conn.name), "no_such_action", {})


# -- the plan -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _no_connection(rig: Rig) -> Iterator[None]:
    """Any connection attempt fails the test (the connector's open, and every socket connect)."""
    def refuse(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("the connector connected while planning")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rig.connector, "open", refuse)
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket.socket, "connect_ex", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield


def check_plan_is_read_only(rig: Rig) -> None:
    """Validate, preview and summarize connect nowhere; a resolve step (decision 1) only reads."""
    conn, before = rig.connector, rig.state()
    with _no_connection(rig):
        conn.validate(rig.target, rig.action, rig.args)
        assert conn.preview(rig.target, rig.action, rig.args, rig.ctx)
        assert conn.summarize(rig.target, rig.action, rig.args, rig.ctx)
    assert rig.state() == before, "planning changed the target"
    if callable(getattr(conn, "resolve", None)):
        with rig.session() as s:
            conn.resolve(s, rig.action, rig.args)
        assert rig.state() == before, "the resolve step changed the target"


def check_protected_refused_before_connecting(rig: Rig) -> None:
    if not rig.refused:
        pytest.skip(rig.protected_elsewhere)
    before = rig.state()
    for target, args in rig.refused:
        with _no_connection(rig), pytest.raises(InvalidInput):
            rig.connector.validate(target, rig.action, args)
    assert rig.state() == before


# -- the change ---------------------------------------------------------------------------------------------------
def check_snapshot_apply_undo(rig: Rig) -> None:
    """Snapshot read-only and journal-able before apply; apply idempotent; undo restores the snapshot exactly."""
    conn, before = rig.connector, rig.state()
    with rig.session() as s:
        snap = conn.snapshot(s, rig.action, rig.args)
        assert isinstance(snap, Snapshot)
        assert rig.state() == before, "snapshot changed the target"
        journaled = json.dumps(snap.to_dict(), sort_keys=True)  # what the engine commits before apply
        first = conn.apply(s, rig.action, rig.args, snap)
        assert first.changed
        assert json.dumps(snap.to_dict(), sort_keys=True) == journaled, "apply altered the journaled snapshot"
        assert conn.verify(s, rig.action, rig.args).in_effect
        changed = rig.state()
        assert changed != before
    with rig.session() as s:
        again = conn.apply(s, rig.action, rig.args, conn.snapshot(s, rig.action, rig.args))
        assert not again.changed, "apply is not idempotent"
        assert rig.state() == changed
    with rig.session() as s:
        conn.undo(s, rig.action, rig.args, snap)
        assert not conn.verify(s, rig.action, rig.args).in_effect
    assert rig.state() == before, "undo did not restore the state the snapshot recorded"


def check_preview_equals_sent(rig: Rig) -> None:
    conn = rig.connector
    with rig.session() as s:
        facts = None
        if callable(getattr(conn, "resolve", None)):
            facts = conn.resolve(s, rig.action, rig.args)
        preview = (conn.preview(rig.target, rig.action, rig.args, rig.ctx, facts=facts) if facts is not None
                   else conn.preview(rig.target, rig.action, rig.args, rig.ctx))
        snap = conn.snapshot(s, rig.action, rig.args)
        mark = len(rig.sent())
        conn.apply(s, rig.action, rig.args, snap)
        rig.compare(preview, rig.sent()[mark:])
    with rig.session() as s:
        conn.undo(s, rig.action, rig.args, snap)


def check_dropped_after_write_is_in_doubt(rig: Rig) -> None:
    """The change reached the target and the connection died: never a refusal, always the connector's error."""
    conn, before = rig.connector, rig.state()
    with rig.session() as s:
        snap = conn.snapshot(s, rig.action, rig.args)
        with rig.drop_after_write(), pytest.raises(Exception) as caught:
            conn.apply(s, rig.action, rig.args, snap)
    exc = caught.value
    assert isinstance(exc, ConnectorError), f"a library exception escaped: {type(exc).__name__}: {exc}"
    assert not isinstance(exc, REFUSALS), f"a dropped connection was reported as a refusal: {exc!r}"
    assert rig.state() != before, "the double dropped the connection before the change reached the target"
    _no_secret(rig, exc)
    with rig.session() as s:  # what the engine does with an action in doubt (ActionRunner.resolve): verify on a
        if not conn.verify(s, rig.action, rig.args).in_effect:  # fresh session; absent -> apply once from the
            conn.apply(s, rig.action, rig.args, snap)  # journaled snapshot (never a new one)
        assert conn.verify(s, rig.action, rig.args).in_effect
        conn.undo(s, rig.action, rig.args, snap)
    assert rig.state() == before, "undo after the resolution did not restore the journaled snapshot"


def check_unreachable_is_mapped(rig: Rig) -> None:
    """Nothing answers: the connector's ``Unreachable`` (retry may help, nothing was changed), never a library
    exception or a refusal, and no secret in it."""
    assert rig.unreachable is not None, f"{rig.connector.name}: the rig names no unreachable target"
    before = rig.state()
    with rig.around(), pytest.raises(Exception) as caught:
        rig.connector.open(rig.unreachable, rig.creds, rig.ctx).close()
    assert isinstance(caught.value, Unreachable), f"{type(caught.value).__name__}: {caught.value}"
    _no_secret(rig, caught.value)
    assert rig.state() == before


def check_secrets_stay_out(rig: Rig) -> None:
    conn = rig.connector
    wrong = Credentials(rig.creds.username, Secret("Wr0ng-pa55word-x9"), private_key_path=None)
    with pytest.raises(AuthError) as caught, rig.session(creds=wrong):
        pass
    _no_secret(rig, caught.value, extra=["Wr0ng-pa55word-x9"])
    with rig.session() as s:
        snap = conn.snapshot(s, rig.action, rig.args)
        result = conn.apply(s, rig.action, rig.args, snap)
        check = conn.verify(s, rig.action, rig.args)
        undone = conn.undo(s, rig.action, rig.args, snap)
    for record in (snap.to_dict(), result.to_dict(), check.to_dict(), undone.to_dict(),
                   conn.preview(rig.target, rig.action, rig.args, rig.ctx)):
        _no_secret(rig, record)


def _no_secret(rig: Rig, thing: Any, extra: list[str] | None = None) -> None:
    if isinstance(thing, BaseException):
        text = " ".join([str(thing), repr(thing), repr(getattr(thing, "detail", "")),
                         repr(getattr(thing, "__cause__", "") or "")])
    elif isinstance(thing, Mapping | list):
        text = json.dumps(thing, default=str)
    else:
        text = repr(thing)
    for secret in [*rig.secrets, *(extra or [])]:
        assert secret not in text, f"a secret appears in {type(thing).__name__}"


CHECKS: dict[str, Callable[[Rig], None]] = {
    "plan_is_read_only": check_plan_is_read_only,
    "protected_refused": check_protected_refused_before_connecting,
    "snapshot_apply_undo": check_snapshot_apply_undo,
    "preview_equals_sent": check_preview_equals_sent,
    "dropped_is_in_doubt": check_dropped_after_write_is_in_doubt,
    "secrets_stay_out": check_secrets_stay_out,
    "unreachable_is_mapped": check_unreachable_is_mapped,
}
