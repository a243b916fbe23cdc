"""``winrm_windows``: Windows hosts over WinRM (pywinrm) — isolate, kill sessions, capture evidence.

Example::

    conn = WinRMWindowsConnector()
    target = Target("ws01", "host", "10.0.0.21", "winrm_windows", os="windows",
                    options={"ca_file": "/etc/agent/winrm-ca.pem", "server_name": "ws01.corp.example"})
    conn.validate(target, "isolate", {})
    with conn.open(target, creds, ctx) as s:
        snap = conn.snapshot(s, "isolate", {})
        conn.apply(s, "isolate", {}, snap)
        assert conn.verify(s, "isolate", {}).in_effect
        conn.undo(s, "isolate", {}, snap)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self

from connectors.base import ActionHooks, ConnectorBase
from connectors.types import (
    ActionResult,
    ActionSpec,
    ConnectorContext,
    Credentials,
    Snapshot,
    Target,
    Verification,
)
from connectors.winrm_windows import evidence, firewall, isolation, usersessions
from connectors.winrm_windows.allowlist import check_allow_rules, keep_rules
from connectors.winrm_windows.plan import TASK_NAME, build_plan
from connectors.winrm_windows.powershell import validate_user_name
from connectors.winrm_windows.options import parse_settings
from connectors.winrm_windows.session import WinRMSession

__all__ = ["WinRMWindowsConnector"]


class _OpenSession(WinRMSession):
    """A :class:`WinRMSession` usable as a context manager (``with conn.open(...) as s``)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WinRMWindowsConnector(ConnectorBase):
    """Windows Firewall isolation with a dead-man switch, session kill and evidence capture over WinRM."""

    name: ClassVar[str] = "winrm_windows"
    inventory_section: ClassVar[str] = "hosts"
    host_os: ClassVar[tuple[str, ...]] = ("windows",)
    actions: ClassVar[Mapping[str, ActionSpec]] = {
        # isolate's undo is in parts (``undo_in_parts``): one PowerShell script, run line by line, removes the
        # group's rules, recreates its earlier rules, then restores each profile with its own
        # Set-NetFirewallProfile. Stopped in between (an error, the shell's process ended), the host keeps
        # Block/Block with no rule of ours — and already reads "not isolated". A resolution then runs the undo
        # again, which re-reads the host and restores what still differs from the snapshot ("nothing to undo"
        # otherwise): tests/integration/winrm/test_winrm_release_in_parts.py.
        "isolate": ActionSpec("isolate", "Windows Firewall group IR-Containment: only the management addresses "
                              "reach WinRM (and RDP if allowed); everything else blocked both ways",
                              "host", undo_description="remove the group, restore the saved profile settings",
                              active_as="isolated", blast="hosts", undo_in_parts=True),
        "kill_sessions": ActionSpec("kill_sessions", "Purge a user's Kerberos tickets and log off their sessions",
                                    "host", reversible=False),
        "capture_evidence": ActionSpec("capture_evidence", "Processes, TCP connections, sessions, logon events, "
                                       "firewall state", "host", reversible=False, mutating=False),
    }

    # -- connection -------------------------------------------------------------------------------------------
    def open(self, target: Target, creds: Credentials, ctx: ConnectorContext) -> _OpenSession:
        """HTTPS with certificate validation unless the host allows HTTP (then messages are encrypted)."""
        settings = parse_settings(target)
        return _OpenSession(target, creds, ctx, settings).open()  # type: ignore[return-value]

    # -- validation (before connecting) -----------------------------------------------------------------------
    def check_target(self, target: Target) -> None:
        """Transport and options of an inventory entry (CredSSP, Kerberos without FQDN/realm/KDC/gssapi...) and
        allow-list entries this connector cannot express."""
        parse_settings(target)
        check_allow_rules(target.allow)

    def _validate_isolate(self, target: Target, args: Mapping[str, Any]) -> None:
        parse_settings(target)
        check_allow_rules(target.allow)

    def _validate_kill_sessions(self, target: Target, args: Mapping[str, Any]) -> None:
        parse_settings(target)
        validate_user_name(args.get("user"), field="user")

    def _validate_capture_evidence(self, target: Target, args: Mapping[str, Any]) -> None:
        parse_settings(target)
        evidence.validate_max_events(args.get("max_events"))

    # -- plan summary (no connection) -------------------------------------------------------------------------
    def summarize(self, target: Target, action: str, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        """Effect, what stays reachable, how the agent logs on again after isolating, auto-revert and undo."""
        if action != "isolate":
            return super().summarize(target, action, args, ctx)
        settings = parse_settings(target)
        mgmt = ", ".join(str(a) for a in ctx.management_addresses)
        kept = [f"WinRM {settings.port} from {mgmt}" + (" (and RDP)" if settings.allow_rdp else "")]
        if settings.keep_dhcp_dns:
            kept.append("DHCP and DNS to the host's own servers")
        listed = [r for r in target.allow if r.to]
        if listed:
            kept.append(f"{len(listed)} allow-list entr{'y' if len(listed) == 1 else 'ies'} "
                        f"({', '.join(sorted({r.source for r in listed}))})")
        if settings.domain_controllers:
            kept.append(f"domain controllers {', '.join(settings.domain_controllers)}")
        if settings.transport == "kerberos":
            reauth = "re-authentication: Kerberos, the ticket is checked on the host (no domain controller needed)"
        elif settings.domain_controllers:
            reauth = (f"re-authentication: NTLM, completed through the kept domain controllers "
                      f"{', '.join(settings.domain_controllers)} (MS-APDS)")
        else:
            reauth = ("re-authentication: NTLM without domain_controllers — fine for a local account; a domain "
                      "account will be refused before any change")
        return [(f"Windows Firewall group IR-Containment, all profiles default Block; keep {'; '.join(kept)}; "
                "block everything else in and out"),
                reauth,
                (f"dead-man task reverts in {settings.deadman_minutes} min unless a fresh connection confirms; "
                "undo: remove the group, restore profiles and pre-existing group rules exactly")]

    # -- previews (no connection) -----------------------------------------------------------------------------
    def _preview_isolate(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        settings = parse_settings(target)
        check_allow_rules(target.allow)
        mgmt = [str(a) for a in ctx.management_addresses]
        keep = keep_rules(target.allow, management=mgmt, keep_dhcp_dns=settings.keep_dhcp_dns, dns_servers=(),
                          dhcp_servers=(), domain_controllers=settings.domain_controllers)
        plan = build_plan(mgmt, winrm_port=settings.port, allow_rdp=settings.allow_rdp, keep=keep)
        return ([(f"# register scheduled task {TASK_NAME} (SYSTEM, -EncodedCommand revert): revert in "
                 f"{settings.deadman_minutes} min")]
                + firewall.apply_script("netsecurity", plan, [], None).splitlines()
                + ([("# + keep DNS to the host's own resolvers (UDP/TCP 53) and DHCP to its DHCP servers: their "
                    "addresses are read from the host when applying and left out of the block ranges")]
                   if settings.keep_dhcp_dns else [])
                + ["# verify over a new connection, then delete the scheduled task",
                   "# (hosts without the NetSecurity module are refused before any change)"])

    def _preview_kill_sessions(self, target: Target, args: Mapping[str, Any], ctx: ConnectorContext) -> list[str]:
        validate_user_name(args.get("user"), field="user")
        return ([(f"# find what {args.get('user')} has running (CIM: Win32_LoggedOnUser, Win32_LogonSession, "
                 "Win32_SessionProcess, Win32_Process; Get-SmbSession; WinRM shells):")]
                + usersessions.READ_SCRIPT.splitlines()
                + [("# then, by the ids found: & logoff.exe <session id>; Close-SmbSession -SessionId <id> -Force; "
                   "Remove-WSManInstance -ResourceURI shell -SelectorSet @{ ShellId = '<guid>' }; "
                   "Stop-Process -Id <pid> -Force; & klist.exe purge -li <logon id> (best effort)")])

    def _preview_capture_evidence(self, target: Target, args: Mapping[str, Any],
                                  ctx: ConnectorContext) -> list[str]:
        return evidence.evidence_script(evidence.validate_max_events(args.get("max_events"))).splitlines()

    # -- isolate ----------------------------------------------------------------------------------------------
    def _snapshot_isolate(self, s: WinRMSession, args: Mapping[str, Any]) -> Snapshot:
        return isolation.snapshot_isolate(s)

    def _apply_isolate(self, s: WinRMSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return isolation.apply_isolate(s, snap)

    def _verify_isolate(self, s: WinRMSession, args: Mapping[str, Any]) -> Verification:
        return isolation.verify_isolate(s)

    def _undo_isolate(self, s: WinRMSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return isolation.undo_isolate(s, snap)

    # -- kill_sessions ----------------------------------------------------------------------------------------
    def _apply_kill_sessions(self, s: WinRMSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return usersessions.kill_sessions(s, str(args.get("user")))

    def _verify_kill_sessions(self, s: WinRMSession, args: Mapping[str, Any]) -> Verification:
        return usersessions.verify_sessions_gone(s, str(args.get("user")))

    # -- capture_evidence -------------------------------------------------------------------------------------
    def _apply_capture_evidence(self, s: WinRMSession, args: Mapping[str, Any], snap: Snapshot) -> ActionResult:
        return evidence.capture_evidence(s, evidence.validate_max_events(args.get("max_events")))

    def _verify_capture_evidence(self, s: WinRMSession, args: Mapping[str, Any]) -> Verification:
        return Verification(True, "evidence capture changes nothing on the host")

    def hooks(self) -> Mapping[str, ActionHooks]:
        """Which method carries out which step of which action (the table ConnectorBase dispatches from)."""
        return {
            "isolate": ActionHooks(apply=self._apply_isolate, verify=self._verify_isolate,
                                   validate=self._validate_isolate, preview=self._preview_isolate,
                                   snapshot=self._snapshot_isolate, undo=self._undo_isolate),
            "kill_sessions": ActionHooks(apply=self._apply_kill_sessions, verify=self._verify_kill_sessions,
                                         validate=self._validate_kill_sessions, preview=self._preview_kill_sessions),
            "capture_evidence": ActionHooks(apply=self._apply_capture_evidence, verify=self._verify_capture_evidence,
                                            validate=self._validate_capture_evidence,
                                            preview=self._preview_capture_evidence),
        }
