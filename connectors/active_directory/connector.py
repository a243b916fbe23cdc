"""The ``active_directory`` connector: account containment on a domain controller over LDAPS/StartTLS (ldap3).

The Target is the directory (``Target.address`` = the DC, ``Target.options`` see :mod:`.options`); each action
takes ``args["account"]`` (sAMAccountName, UPN or DN); ``disable_account`` also takes ``args["accounts"]`` (a
list: one action, one search, pipelined modifies, per-account outcomes — :mod:`.batch`). Every action validates its
input and refuses protected accounts by name before connecting, resolves exactly one account, refuses protected ones
by SID/DN again, and only then modifies. Sessions come from a per-connector pool, so a run over 100 accounts binds once.

Example::

    conn = ActiveDirectoryConnector()
    conn.validate(dc, "disable_account", {"account": "alice"})
    with conn.open(dc, Credentials("CN=ir-agent,...", Secret(pw)), ConnectorContext()) as s:
        snap = conn.snapshot(s, "disable_account", {"account": "alice"})
        conn.apply(s, "disable_account", {"account": "alice"}, snap)
        assert conn.verify(s, "disable_account", {"account": "alice"}).in_effect
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from connectors.active_directory import batch, disable, evidence, groups, password
from connectors.active_directory.accounts import check_by_name, validate_account
from connectors.active_directory.batch_resolve import NAMES_PER_FILTER
from connectors.active_directory.options import DEFAULT_PRIVILEGED_GROUPS, DirectoryOptions
from connectors.active_directory.session import ADSession, ConnectionPool
from connectors.base import ActionHooks, ConnectorBase
from connectors.errors import ConnectorError, InvalidInput
from connectors.types import ActionResult, ActionSpec, ConnectorContext, Credentials, Snapshot, Target, Verification

__all__ = ["ACTIONS", "ActiveDirectoryConnector"]

_R = TypeVar("_R")

ACTIONS: Mapping[str, ActionSpec] = {
    "disable_account": ActionSpec(
        "disable_account", "Disable the account (userAccountControl |= ACCOUNTDISABLE); its logons fail at once. "
        "Issued Kerberos tickets stay valid until expiry.", "account",
        undo_description="restore the exact userAccountControl value recorded before", active_as="disabled",
        blast="accounts", batch="accounts", items_absent="enabled", undo_in_parts=True),
    "remove_privileged_groups": ActionSpec(
        "remove_privileged_groups", "Remove the account's direct memberships in privileged groups and in groups "
        "nested in them (found via LDAP_MATCHING_RULE_IN_CHAIN).", "account",
        undo_description="re-add exactly the memberships that were removed", active_as="out of privileged groups",
        undo_in_parts=True),
    "reset_password": ActionSpec(
        "reset_password", "OPT-IN, NOT REVERSIBLE: set a random password nobody knows and require a change at "
        "next logon. The old password keeps working for NTLM/LDAP for a while: never instead of disabling.",
        "account", reversible=False, undo_description="cannot be undone; an administrator must set a new password"),
    # expire_sessions' undo is one part: one LDAP modify replacing logonHours on one account, which the DC
    # applies whole or not at all (RFC 4511 4.6: "the entire list of modifications MUST be performed in the
    # order they are listed as a single atomic operation"): "no longer in effect" then means "restored".
    "expire_sessions": ActionSpec(
        "expire_sessions", "Allow no logon hours (logonHours = 21 zero bytes) so new logons fail; issued Kerberos "
        "tickets and open host sessions are NOT ended — chain host-side kill_sessions.", "account",
        undo_description="restore the recorded logonHours (or remove the attribute)", active_as="no logon hours"),
    "capture_evidence": ActionSpec(
        "capture_evidence", "Record the account's attributes and group memberships as an evidence file.",
        "account", mutating=False, undo_description="nothing to undo"),
}


_PRIVILEGED = ", ".join(DEFAULT_PRIVILEGED_GROUPS)
NO_HOURS_B64 = base64.b64encode(disable.NO_LOGON_HOURS).decode()  # expire_sessions' snapshot form of "no hours"
_PREVIEW: Mapping[str, Callable[[str], list[str]]] = {
    "disable_account": lambda a: [
        (f"search user {a!r}; modify its DN: userAccountControl delete <old> add <old | 0x2> (ACCOUNTDISABLE; "
         f"one atomic compare-and-swap: it fails, and is re-read, if the value changed since the search)")],
    "remove_privileged_groups": lambda a: [
        f"search user {a!r} and its groups (direct, and nested via {groups.IN_CHAIN})",
        (f"for each direct group that is, or is nested in, one of {_PRIVILEGED} (+ options.privileged_groups): "
         "modify group: delete member <user DN>")],
    "reset_password": lambda a: [
        f"search user {a!r}; modify its DN: unicodePwd := <random 32-character password, never shown or stored>",
        "modify its DN: pwdLastSet := 0",
        "NOT REVERSIBLE; the old password stays valid for NTLM/LDAP for a while"],
    "expire_sessions": lambda a: [
        f"search user {a!r}; modify its DN: logonHours := 21 zero bytes (no hours)",
        "issued Kerberos tickets stay valid; host sessions need kill_sessions"],
    "capture_evidence": lambda a: [
        f"search user {a!r}: read {len(evidence.EVIDENCE_ATTRS)} attributes and its group memberships (no change)"],
}


def _preview_batch(names: list[str]) -> list[str]:
    shown = ", ".join(repr(n) for n in names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    searches = -(-len(names) // NAMES_PER_FILTER)
    return [(f"search {len(names)} users in {searches} request(s): one OR filter of sAMAccountName/UPN/DN terms "
             f"(values escaped), paged: {shown}"),
            "refuse (send nothing to) names that match no account, several accounts, or a protected account",
            ("for each enabled account, pipelined on one connection: modify its DN: userAccountControl delete "
             "<old> add <old | 0x2> (ACCOUNTDISABLE; an atomic compare-and-swap, re-read if the value changed)"),
            ("per-account outcomes in the result; undo swaps each account this action disabled back to its "
             "recorded value")]


class ActiveDirectoryConnector(ConnectorBase):
    """Disable, de-privilege, lock out and document AD user accounts; see the module docstring."""

    name: ClassVar[str] = "active_directory"
    actions: ClassVar[Mapping[str, ActionSpec]] = ACTIONS
    inventory_section: ClassVar[str] = "directories"

    def __init__(self, *, pooled: bool = True) -> None:
        self.pool = ConnectionPool() if pooled else None

    def _check(self, target: Target, action: str, args: Mapping[str, Any]) -> tuple[DirectoryOptions, list[str]]:
        """Validated account names: ``[account]``, or the ``accounts`` list (disable_account only)."""
        try:
            opts = DirectoryOptions.from_target(target)
            if "accounts" in args:
                if action != "disable_account":
                    raise InvalidInput(f"{action} takes one account; only disable_account accepts 'accounts'")
                if "account" in args:
                    raise InvalidInput("give either 'account' or 'accounts', not both")
                return opts, batch.validate_accounts(args["accounts"], opts)
            account = validate_account(args.get("account"), opts)
            check_by_name(account, opts)
        except ConnectorError as exc:
            exc.with_context(target=target.name, connector=self.name, action=action)
            raise
        return opts, [account]

    def validate(self, target: Target, action: str, args: Mapping[str, Any]) -> None:
        self._entry(action)
        self._check(target, action, args)

    def preview(self, target: Target, action: str, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        _opts, names = self._check(target, action, args)
        self._entry(action)
        if "accounts" in args:
            return _preview_batch(names)
        return list(_PREVIEW[action](names[0]))

    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> ADSession:
        """Check a pooled bound connection out (or open one: TCP, TLS with validation, bind)."""
        opts = DirectoryOptions.from_target(target)
        try:
            if self.pool is not None:
                conn = self.pool.acquire(opts, creds, ctx)
            else:
                from connectors.active_directory.session import connect
                conn = connect(opts, creds, ctx)
        except ConnectorError as exc:
            exc.with_context(target=target.name, connector=self.name)
            raise
        return ADSession(conn, opts, creds, self.pool)

    def identify(self, session: ADSession, names: list[str]) -> list[dict[str, str] | None]:
        """Read-only: the identity each name resolves to (objectGUID, objectSid, DN, sAMAccountName, UPN);
        ``{"problem": "protected_account", "message": ...}`` for a name that resolves to a protected account
        (by SID, DN or alias: the planner refuses the command before anything is sent); None when it names no
        single account (not found, ambiguous). One search per 200 names.

        Why: the agent journals an account by its objectGUID, so ``jdoe``, ``JDOE``, ``jdoe@lab.test`` and
        ``LAB\\jdoe`` are one subject for undo and counting; the planner calls this before showing the plan.
        """
        from connectors.active_directory.batch_resolve import resolve_many
        if not isinstance(session, ADSession):
            raise InvalidInput("identify: session is not an active_directory session")
        out: list[dict[str, str] | None] = []
        for r in resolve_many(session, names):
            if r.problem == "protected_account":
                out.append({"problem": r.problem, "message": r.message})
            elif r.account is not None and r.problem in ("", "duplicate"):
                out.append(r.account.identity())
            else:
                out.append(None)
        return out

    def close(self) -> None:
        """Unbind every pooled connection (end of a run, daemon shutdown)."""
        if self.pool is not None:
            self.pool.close_all()

    def already_so(self, action: str, snapshot: Snapshot) -> bool | None:
        """The snapshot shows the effect already there: disabled (every account of a batch that resolved), no
        privileged membership to remove, no logon hours (:meth:`ConnectorBase.already_so`)."""
        data = snapshot.data
        if action == "disable_account":
            if isinstance(data.get("accounts"), list):
                return all(i.get("status") != "ok" or int(i["userAccountControl"]) & disable.ACCOUNTDISABLE
                           for i in data["accounts"])
            return bool(int(data["userAccountControl"]) & disable.ACCOUNTDISABLE) if "userAccountControl" in data \
                else None
        if action == "remove_privileged_groups":
            return not data["to_remove"] if "to_remove" in data else None
        if action == "expire_sessions":
            return data.get("logonHours") == NO_HOURS_B64 if "logonHours" in data else None
        return None

    # -- hooks: one explicit method per (kind, action), so a reader and an IDE go from ``apply`` to the code --
    def _run(self, action: str, fn: Callable[..., _R], session: Any, *rest: Any) -> _R:
        """Call ``fn`` (the action module's function) on an AD session, adding context to its errors."""
        if not isinstance(session, ADSession):
            raise InvalidInput(f"{action}: session is not an active_directory session")
        try:
            return fn(session, *rest)
        except ConnectorError as exc:
            exc.with_context(target=session.opts.address, connector=self.name, action=action)
            raise

    def _snapshot_disable_account(self, session: Any, args: Mapping[str, Any]) -> Snapshot:
        return self._run("disable_account", disable.snapshot_disable, session, args)

    def _apply_disable_account(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("disable_account", disable.apply_disable, session, args, snap)

    def _verify_disable_account(self, session: Any, args: Mapping[str, Any]) -> Verification:
        return self._run("disable_account", disable.verify_disable, session, args)

    def _undo_disable_account(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("disable_account", disable.undo_disable, session, args, snap)

    def _snapshot_remove_privileged_groups(self, session: Any, args: Mapping[str, Any]) -> Snapshot:
        return self._run("remove_privileged_groups", groups.snapshot_groups, session, args)

    def _apply_remove_privileged_groups(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("remove_privileged_groups", groups.apply_groups, session, args, snap)

    def _verify_remove_privileged_groups(self, session: Any, args: Mapping[str, Any]) -> Verification:
        return self._run("remove_privileged_groups", groups.verify_groups, session, args)

    def _undo_remove_privileged_groups(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("remove_privileged_groups", groups.undo_groups, session, args, snap)

    def _snapshot_reset_password(self, session: Any, args: Mapping[str, Any]) -> Snapshot:
        return self._run("reset_password", password.snapshot_reset, session, args)

    def _apply_reset_password(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("reset_password", password.apply_reset, session, args, snap)

    def _verify_reset_password(self, session: Any, args: Mapping[str, Any]) -> Verification:
        return self._run("reset_password", password.verify_reset, session, args)

    def _snapshot_expire_sessions(self, session: Any, args: Mapping[str, Any]) -> Snapshot:
        return self._run("expire_sessions", disable.snapshot_sessions, session, args)

    def _apply_expire_sessions(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("expire_sessions", disable.apply_sessions, session, args, snap)

    def _verify_expire_sessions(self, session: Any, args: Mapping[str, Any]) -> Verification:
        return self._run("expire_sessions", disable.verify_sessions, session, args)

    def _undo_expire_sessions(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("expire_sessions", disable.undo_sessions, session, args, snap)

    def _apply_capture_evidence(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("capture_evidence", evidence.apply_evidence, session, args, snap)

    def _verify_capture_evidence(self, session: Any, args: Mapping[str, Any]) -> Verification:
        return self._run("capture_evidence", evidence.verify_evidence, session, args)

    def _undo_capture_evidence(self, session: Any, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return self._run("capture_evidence", evidence.undo_evidence, session, args, snap)

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method carries out which step of which action (the table ConnectorBase dispatches from)."""
        return {
            "disable_account": ActionHooks(apply=self._apply_disable_account, verify=self._verify_disable_account,
                                           snapshot=self._snapshot_disable_account, undo=self._undo_disable_account),
            "remove_privileged_groups": ActionHooks(apply=self._apply_remove_privileged_groups,
                                                    verify=self._verify_remove_privileged_groups,
                                                    snapshot=self._snapshot_remove_privileged_groups,
                                                    undo=self._undo_remove_privileged_groups),
            "reset_password": ActionHooks(apply=self._apply_reset_password, verify=self._verify_reset_password,
                                          snapshot=self._snapshot_reset_password),
            "expire_sessions": ActionHooks(apply=self._apply_expire_sessions, verify=self._verify_expire_sessions,
                                           snapshot=self._snapshot_expire_sessions, undo=self._undo_expire_sessions),
            "capture_evidence": ActionHooks(apply=self._apply_capture_evidence, verify=self._verify_capture_evidence,
                                            undo=self._undo_capture_evidence),
        }
