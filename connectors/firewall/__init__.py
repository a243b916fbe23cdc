"""Block and unblock IP addresses on edge firewalls and routers through netmiko (connector ``firewall``).

One connector, one dialect per netmiko ``device_type`` (``Target.options["device_type"]``): ``linux`` (nftables),
``cisco_asa``, ``cisco_ios``/``cisco_xe``, ``fortinet``, ``paloalto_panos``, ``juniper_junos``,
``mikrotik_routeros``. Every dialect fills one group the agent owns (``IR-BLOCKLIST``) referenced by one deny rule
(``IR-BLOCK``) at the top of the device's policy, and touches nothing else. See :mod:`connectors.firewall.dialect`
for the shared rules (read first, stop at the first refused line, clean up, save once).

Actions (args):

* ``block_ip`` — ``addresses: list[str]``, ``protected: list[str]`` (management, protected CIDRs, the device's
  own addresses; passed by the engine), ``allow_private: bool`` (RFC 1918/ULA), ``allow_broad: bool``
  (prefixes shorter than ``options.min_prefix_v4``/``_v6``, default /16 and /32), ``outbound: bool`` (require
  that traffic TO the addresses is dropped too: refused before connecting on a device whose options do not
  name where outbound traffic is filtered — ``acl_out``, ``filter_out``; absent: whatever the device's options
  allow, with a warning when that is inbound only). Snapshot = the group's
  members before; undo removes exactly the addresses this action added (members present before stay).
  Undoing the last address leaves the scaffold (group with its placeholder, deny rule) in place — it matches
  nothing.
* ``unblock_ip`` — same args; undo re-blocks what it removed.
* ``list_blocked`` — read-only; ``details["blocked"]``.

Example::

    conn = FirewallConnector()
    args = {"addresses": ["45.77.1.2"], "protected": ["192.0.2.0/28"]}
    conn.validate(target, "block_ip", args)            # InvalidInput before any connection
    with conn.open(target, creds, ctx) as s:
        snap = conn.snapshot(s, "block_ip", args)
        conn.apply(s, "block_ip", args, snap)          # one session, one config entry, one save
        assert conn.verify(s, "block_ip", args).in_effect
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any, ClassVar

from connectors.base import ActionHooks, ConnectorBase, Session
from connectors.errors import InvalidInput, Rejected
from connectors.firewall.addresses import Network, parse_addresses, parse_network, parse_protected, to_text
from connectors.firewall.cisco import CiscoAsa, CiscoIos
from connectors.firewall.dialect import Dialect
from connectors.firewall.model import GROUP, DeviceState
from connectors.firewall.fortinet import Fortinet
from connectors.firewall.junos import JuniperJunos
from connectors.firewall.linux import LinuxNft
from connectors.firewall.mikrotik import MikrotikRouterOs
from connectors.firewall.panos import PaloAltoPanos
from connectors.firewall.session import DeviceSession, open_session
from connectors.types import (
    ActionResult,
    ActionSpec,
    ConnectorContext,
    Credentials,
    Snapshot,
    Target,
    Verification,
)

__all__ = ["DIALECTS", "DeviceSession", "FirewallConnector", "dialect_for"]

DIALECTS: dict[str, type[Dialect]] = {}
for _cls in (LinuxNft, CiscoAsa, CiscoIos, Fortinet, PaloAltoPanos, JuniperJunos, MikrotikRouterOs):
    for _name in (_cls.device_type, *_cls.aliases):
        DIALECTS[_name] = _cls


def dialect_for(target: Target) -> type[Dialect]:
    """The dialect for ``target.options["device_type"]``; InvalidInput listing the known ones otherwise."""
    device_type = target.options.get("device_type")
    cls = DIALECTS.get(device_type) if isinstance(device_type, str) else None
    if cls is None:
        raise InvalidInput(f"options.device_type: {device_type!r} is not supported (known: "
                           f"{', '.join(sorted(DIALECTS))})", target=target.name, connector="firewall",
                           detail={"field": "options.device_type"})
    return cls


def _session(session: Session) -> DeviceSession:
    if not isinstance(session, DeviceSession):
        raise InvalidInput("firewall connector got a session it did not open", connector="firewall")
    return session


class FirewallConnector(ConnectorBase):
    """Block/unblock addresses on network devices (see module docstring)."""

    name: ClassVar[str] = "firewall"
    inventory_section: ClassVar[str] = "devices"
    #: a real run pins the exact lines it showed (``args["planned_lines"]``, agent/previews.py); snapshot refuses
    #: the action, nothing sent, when the device now needs other lines (it changed since the plan was shown)
    checks_planned_lines: ClassVar[bool] = True
    # Both undos are in parts (``undo_in_parts``): one line per address, typed ahead ``Dialect.pipeline`` lines
    # per round trip (the Linux router: one), then one save. A run killed between round trips leaves some
    # addresses restored and others not (and nothing saved), and one address restored already reads "not in
    # effect"; a resolution then runs the undo again, which re-reads the group and sends only the lines still
    # missing, plus the save (tests/integration/firewall/test_undo_interrupted.py).
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        "block_ip": ActionSpec("block_ip", f"add addresses to {GROUP} (denied at the top of the policy) and save",
                               "device", undo_description="remove exactly the addresses this action added",
                               active_as="blocked", batch="addresses", items_before="already_blocked",
                               items_absent="missing", undo_in_parts=True),
        "unblock_ip": ActionSpec("unblock_ip", f"remove addresses from {GROUP} and save", "device",
                                 undo_description="block again the addresses this action removed", lifts="block_ip",
                                 batch="addresses", items_before="was_blocked", items_absent="still_blocked",
                                 undo_in_parts=True),
        "list_blocked": ActionSpec("list_blocked", f"list the members of {GROUP}", "device", reversible=False,
                                   mutating=False),
    }

    # ----- validation (before any connection) -----------------------------------------------------------------
    def _addresses(self, target: Target, args: Mapping[str, Any]) -> list[Network]:
        if target.kind != "device":
            raise InvalidInput(f"target {target.name!r} is a {target.kind}, not a device", target=target.name)
        cls = dialect_for(target)
        cls.validate_options(target.options)
        protected = parse_protected(args.get("protected"))
        try:
            protected.append(ipaddress.ip_network(target.address))
        except ValueError:
            pass
        flags = {}
        for flag in ("allow_private", "allow_broad", "outbound"):
            flags[flag] = args.get(flag, False)
            if not isinstance(flags[flag], bool):
                raise InvalidInput(f"{flag}: {flags[flag]!r} must be true or false", detail={"field": flag})
        if flags["outbound"] and not cls.outbound_for(target.options):
            option = cls.outbound_option or "device_type"
            raise InvalidInput(
                f"options.{option}: not set for {target.name} ({cls.device_type}), so traffic TO the address(es) "
                f"(call-backs, C2) cannot be blocked there; name {_OUTBOUND_HINT.get(cls.device_type, 'it')} in "
                "the inventory, or block inbound only (--inbound-only, or outbound: false in a runbook)",
                target=target.name, connector="firewall", detail={"field": f"options.{option}"})
        return parse_addresses(args.get("addresses"), protected=protected, allow_private=flags["allow_private"],
                               allow_broad=flags["allow_broad"], min_prefix=_min_prefix(target),
                               families=cls.families)

    def _validate_block_ip(self, target: Target, args: Mapping[str, Any]) -> None:
        self._addresses(target, args)

    def _validate_unblock_ip(self, target: Target, args: Mapping[str, Any]) -> None:
        self._addresses(target, args)

    def _validate_list_blocked(self, target: Target, args: Mapping[str, Any]) -> None:
        dialect_for(target).validate_options(target.options)

    # ----- dry run ----------------------------------------------------------------------------------------------
    def resolve(self, session: Session, action: str, args: Mapping[str, Any]) -> dict[str, Any]:
        """Read-only resolve step (docs/architecture.md, decision 1): the device state the exact preview and
        the apply are computed from — group members, scaffold, rule order, pending commits, our login. Sends
        only ``show`` commands."""
        s = _session(session)
        if action in ("block_ip", "unblock_ip"):
            self._addresses(s.target, args)  # validated again: a resolve step never reads for bad input
        state = s.dialect.read_state()
        return {"device_type": s.dialect.device_type, "members": [to_text(m) for m in state.members],
                "group_exists": state.group_exists, "rule_in_place": state.rule_in_place,
                "facts": dict(state.facts), "login": str(getattr(s.dialect.conn, "username", "") or "")}

    def preview(self, target: Target, action: str, args: Mapping[str, Any], ctx: ConnectorContext,
                facts: Mapping[str, Any] | None = None) -> list[str]:
        """Exactly the lines that will be sent, from ``facts`` (see :meth:`resolve`); without facts (offline)
        the state-dependent lines are shown as conditional ones."""
        if facts is None or action not in ("block_ip", "unblock_ip"):
            return super().preview(target, action, args, ctx)
        state = DeviceState(members=[parse_network(m) for m in facts.get("members", [])],
                            group_exists=bool(facts.get("group_exists")),
                            rule_in_place=bool(facts.get("rule_in_place")), facts=dict(facts.get("facts") or {}))
        return dialect_for(target).preview(target.options, self._addresses(target, args),
                                           remove=action == "unblock_ip", state=state,
                                           login=str(facts.get("login") or "") or None)

    def _preview_block_ip(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return dialect_for(target).preview(target.options, self._addresses(target, args))

    def _preview_unblock_ip(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return dialect_for(target).preview(target.options, self._addresses(target, args), remove=True)

    def _preview_list_blocked(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        return [f"(read {GROUP} members)"]

    # ----- session ------------------------------------------------------------------------------------------------
    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> DeviceSession:
        return open_session(dialect_for(target), target, creds, ctx)

    # ----- block_ip -----------------------------------------------------------------------------------------------
    def _check_planned(self, s: DeviceSession, args: Mapping[str, Any], nets: list[Network], state: DeviceState,
                       remove: bool) -> None:
        """Refuse (nothing sent) when the lines this device now needs differ from the ones the plan showed.

        Why: the person confirmed those lines; a device that changed in between (another admin blocked the address,
        edited the ACL, committed a pending change) would get something nobody saw. Re-running shows the new plan.
        """
        planned = args.get("planned_lines")
        if planned is None:
            return
        if not isinstance(planned, list) or not all(isinstance(x, str) for x in planned):
            raise InvalidInput("planned_lines: must be the list of lines the plan showed", target=s.target.name,
                               detail={"field": "planned_lines"})
        login = str(getattr(s.dialect.conn, "username", "") or "") or None
        now = type(s.dialect).preview(s.target.options, nets, remove=remove, state=state, login=login)
        if now == planned:
            return
        from connectors.firewall.addresses import covered_by
        gone, new = [x for x in planned if x not in now], [x for x in now if x not in planned]
        what = [f"no longer sent: {gone[0]!r}" + (f" (+{len(gone) - 1} more)" if len(gone) > 1 else "")] if gone \
            else []
        what += [f"now also needed: {new[0]!r}" + (f" (+{len(new) - 1} more)" if len(new) > 1 else "")] if new else []
        blocked = [to_text(n) for n in nets if covered_by(n, state.members)]
        if blocked and not remove:
            what.insert(0, f"already in {GROUP} now: {', '.join(blocked[:5])}{' ...' if len(blocked) > 5 else ''}")
        raise Rejected(f"{s.target.name} changed since the plan was shown ({'; '.join(what) or 'other order'}); "
                       "nothing was sent — run the command again to see and confirm the new plan",
                       target=s.target.name, detail={"reason": "changed_since_plan", "planned": planned[:50],
                                                     "now": now[:50]})

    def _snapshot_block_ip(self, session: Session, args: Mapping[str, Any]) -> Snapshot:
        s = _session(session)
        nets = self._addresses(s.target, args)
        state = s.dialect.read_state()
        s.dialect._check_own([n for n in nets if n not in state.members], state)  # before any intent is applied
        self._check_planned(s, args, nets, state, remove=False)
        from connectors.firewall.addresses import covered_by
        return Snapshot({"device_type": s.dialect.device_type, "group": GROUP,
                         "members": [to_text(m) for m in state.members],
                         "already_blocked": [to_text(n) for n in nets if covered_by(n, state.members)],
                         "scaffold_present": state.scaffold})

    def _apply_block_ip(self, session: Session, args: Mapping[str, Any], snapshot: Snapshot) -> ActionResult:
        s = _session(session)
        report = s.dialect.block(self._addresses(s.target, args))
        changed = bool(report.applied_lines or report.persist_lines)
        summary = (f"blocked {len(report.changed)} address(es) on {s.target.name}" if changed else
                   f"all {len(report.unchanged)} address(es) already blocked on {s.target.name}")
        warnings = list(report.warnings)
        if not s.dialect.outbound:
            warnings.append(f"outbound traffic TO the address(es) (call-backs, C2) is NOT blocked on "
                            f"{s.target.name}: the {s.dialect.device_type} rule matches sources only")
        return ActionResult(changed, summary, details=_details(report, "added", "already_blocked"),
                            warnings=warnings)

    def _verify_block_ip(self, session: Session, args: Mapping[str, Any]) -> Verification:
        s = _session(session)
        nets = self._addresses(s.target, args)
        ok, blocked, missing, state = s.dialect.verify(nets)
        summary = "all addresses blocked" if ok else (
            f"{len(missing)} address(es) not blocked" if missing else f"{GROUP} is not referenced by the deny rule")
        left = {a: n for a, n in s.dialect.sessions_left(nets).items() if n}
        if ok and left:
            ok, summary = False, (f"blocked, but established sessions remain: "
                                  f"{', '.join(f'{a} ({n})' for a, n in left.items())}")
        elif ok and s.dialect.has_session_table:
            summary += "; no established session of them remains"
        return Verification(ok, summary, observed={"blocked": blocked, "missing": missing,
                                                   "rule_in_place": state.rule_in_place, "sessions_left": left})

    def _undo_block_ip(self, session: Session, args: Mapping[str, Any], snapshot: Snapshot) -> ActionResult:
        s = _session(session)
        before = {parse_network(x) for x in snapshot.data.get("already_blocked", [])}
        ours = [n for n in self._addresses(s.target, args) if n not in before]
        if not ours:
            return ActionResult(False, "nothing to undo: every address was blocked before this action",
                                details={"kept": sorted(to_text(n) for n in before)})
        report = s.dialect.unblock(ours)
        details = _details(report, "removed", "already_absent")
        details["kept"] = sorted(to_text(n) for n in before)
        return ActionResult(bool(report.applied_lines), f"removed {len(report.changed)} address(es) this action "
                            f"had added on {s.target.name}", details=details, warnings=report.warnings)

    # ----- unblock_ip ---------------------------------------------------------------------------------------------
    def _snapshot_unblock_ip(self, session: Session, args: Mapping[str, Any]) -> Snapshot:
        s = _session(session)
        nets = self._addresses(s.target, args)
        state = s.dialect.read_state()
        self._check_planned(s, args, nets, state, remove=True)
        return Snapshot({"device_type": s.dialect.device_type, "group": GROUP,
                         "members": [to_text(m) for m in state.members],
                         "was_blocked": [to_text(n) for n in nets if n in state.members]})

    def _apply_unblock_ip(self, session: Session, args: Mapping[str, Any], snapshot: Snapshot) -> ActionResult:
        s = _session(session)
        report = s.dialect.unblock(self._addresses(s.target, args))
        changed = bool(report.applied_lines or report.persist_lines)
        summary = (f"unblocked {len(report.changed)} address(es) on {s.target.name}" if changed else
                   f"none of the {len(report.unchanged)} address(es) was blocked on {s.target.name}")
        return ActionResult(changed, summary, details=_details(report, "removed", "not_blocked"),
                            warnings=report.warnings)

    def _verify_unblock_ip(self, session: Session, args: Mapping[str, Any]) -> Verification:
        s = _session(session)
        nets = self._addresses(s.target, args)
        state = s.dialect.read_state()
        still = [to_text(n) for n in nets if n in state.members]
        return Verification(not still, "no address is in the block group" if not still else
                            f"{len(still)} address(es) still blocked", observed={"still_blocked": still})

    def _undo_unblock_ip(self, session: Session, args: Mapping[str, Any], snapshot: Snapshot) -> ActionResult:
        s = _session(session)
        again = [parse_network(x) for x in snapshot.data.get("was_blocked", [])]
        if not again:
            return ActionResult(False, "nothing to undo: none of the addresses was blocked before")
        report = s.dialect.block(again)
        return ActionResult(bool(report.applied_lines), f"blocked again {len(report.changed)} address(es) on "
                            f"{s.target.name}", details=_details(report, "added", "already_blocked"))

    # ----- list_blocked -------------------------------------------------------------------------------------------
    def _apply_list_blocked(self, session: Session, args: Mapping[str, Any], snapshot: Snapshot) -> ActionResult:
        s = _session(session)
        members = [to_text(m) for m in s.dialect.list_blocked()]
        return ActionResult(False, f"{len(members)} address(es) in {GROUP} on {s.target.name}",
                            details={"blocked": members, "group": GROUP})

    def _verify_list_blocked(self, session: Session, args: Mapping[str, Any]) -> Verification:
        s = _session(session)
        state = s.dialect.read_state()
        return Verification(True, f"{len(state.members)} address(es) in {GROUP}",
                            observed={"blocked": [to_text(m) for m in state.members],
                                      "rule_in_place": state.rule_in_place})

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method carries out which step of which action (the table ConnectorBase dispatches from)."""
        return {
            "block_ip": ActionHooks(apply=self._apply_block_ip, verify=self._verify_block_ip,
                                    validate=self._validate_block_ip, preview=self._preview_block_ip,
                                    snapshot=self._snapshot_block_ip, undo=self._undo_block_ip),
            "unblock_ip": ActionHooks(apply=self._apply_unblock_ip, verify=self._verify_unblock_ip,
                                      validate=self._validate_unblock_ip, preview=self._preview_unblock_ip,
                                      snapshot=self._snapshot_unblock_ip, undo=self._undo_unblock_ip),
            "list_blocked": ActionHooks(apply=self._apply_list_blocked, verify=self._verify_list_blocked,
                                        validate=self._validate_list_blocked, preview=self._preview_list_blocked),
        }


#: what the outbound option names, per dialect (the refusal says what to write)
_OUTBOUND_HINT = {
    "cisco_asa": "the ACL outbound traffic passes (bound `in` on the inside interface or `out` on the outside "
                 "one) as options.acl_out",
    "cisco_ios": "the ACL outbound traffic passes as options.acl_out, or the outside interface as "
                 "options.interface",
    "juniper_junos": "the inet filter outbound traffic passes (`output` on the outside unit or `input` on the "
                     "inside one) as options.filter_out",
}


def _min_prefix(target: Target) -> dict[int, int]:
    """``options.min_prefix_v4`` / ``min_prefix_v6``: the shortest prefix blocked without ``allow_broad``."""
    out: dict[int, int] = {}
    for version, top in ((4, 32), (6, 128)):
        key = f"min_prefix_v{version}"
        value = target.options.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
            raise InvalidInput(f"options.{key}: {value!r} must be a prefix length 1..{top}",
                               target=target.name, detail={"field": f"options.{key}"})
        out[version] = value
    return out


def _details(report: Any, changed_key: str, unchanged_key: str) -> dict[str, Any]:
    return {changed_key: report.changed, unchanged_key: report.unchanged, "applied_lines": report.applied_lines,
            "persist": report.persist_lines, "sessions": report.session_lines,
            "sessions_cleared": report.sessions_cleared,
            "scaffold_created": report.scaffold_created, "group": GROUP}
