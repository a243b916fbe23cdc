"""Simulated Windows state behind the WinRM double: firewall, scheduled tasks, files, sessions, tickets.

Tests build a :class:`WindowsHost`, hand it to the server, let the connector work, and assert on this state.
The firewall also decides whether a *new* TCP connection from the agent may reach the listener, the way Windows
Firewall would (block rules first, then allow rules, then the profile default), so an isolation that forgot the
management path really locks the agent out.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field

__all__ = [
    "GpoProfile",
    "LogonSession",
    "Process",
    "Profile",
    "Rule",
    "SmbSession",
    "Task",
    "UserSession",
    "WindowsHost",
    "address_covers",
    "display_address",
]


@dataclass
class Profile:
    """One firewall profile as Get-NetFirewallProfile reports it (configured values, may be NotConfigured)."""

    name: str
    enabled: str = "True"
    inbound: str = "NotConfigured"
    outbound: str = "NotConfigured"

    @property
    def effective_enabled(self) -> bool:
        return self.enabled != "False"

    @property
    def effective_inbound(self) -> str:
        return "Allow" if self.inbound == "Allow" else "Block"

    @property
    def effective_outbound(self) -> str:
        return "Block" if self.outbound == "Block" else "Allow"


@dataclass
class GpoProfile:
    """Profile settings a Group Policy sets (``NotConfigured``: the local value applies).

    GPO settings beat local ones in the ActiveStore; ``allow_local_rules`` is "Apply local firewall rules"
    (registry ``AllowLocalPolicyMerge``; ``AllowLocalFirewallRules`` in Get-NetFirewallProfile). With it ``False``
    rules from the local store are ignored for that profile — CIS L1 sets it for Public, DISA STIG for Public and
    Private — which is how Velociraptor's quarantine silently failed (velociraptor issue #2957)."""

    enabled: str = "NotConfigured"
    inbound: str = "NotConfigured"
    outbound: str = "NotConfigured"
    allow_local_rules: str = "NotConfigured"


@dataclass
class Rule:
    """A firewall rule with the properties the connector reads and writes."""

    name: str
    display_name: str
    group: str = ""
    direction: str = "Inbound"
    action: str = "Allow"
    enabled: str = "True"
    profile: str = "Any"
    remote: list[str] = field(default_factory=lambda: ["Any"])
    protocol: str = "Any"
    local_ports: list[str] = field(default_factory=lambda: ["Any"])
    remote_ports: list[str] = field(default_factory=lambda: ["Any"])
    icmp_types: list[str] = field(default_factory=lambda: ["Any"])

    def __post_init__(self) -> None:
        # Windows stores addresses in one canonical form whatever notation created them.
        self.remote = [display_address(t) for t in self.remote]


@dataclass
class Task:
    """A scheduled task registered with ``schtasks /Create /XML``."""

    name: str
    xml: str
    start_boundary: str
    command: str
    arguments: str


@dataclass(frozen=True)
class DirSecurity:
    """Owner and DACL of a directory, by SID (what Get-Acl reports, locale-independent).

    A folder created under ``C:\\ProgramData`` without an explicit security descriptor inherits ProgramData's
    DACL: SYSTEM, Administrators, CREATOR OWNER full control and *Users: create files / create folders* on this
    folder and subfolders — so any local user may pre-create our folder (becoming its owner, who may rewrite its
    DACL) or drop files into it (Microsoft, "ProgramData" folder permissions; FIDELITY.md)."""

    owner: str
    protected: bool
    aces: tuple[str, ...]


SYSTEM_SID, ADMINS_SID, USERS_SID, CREATOR_OWNER_SID = "S-1-5-18", "S-1-5-32-544", "S-1-5-32-545", "S-1-3-0"
INHERITED_FROM_PROGRAMDATA = (SYSTEM_SID, ADMINS_SID, CREATOR_OWNER_SID, USERS_SID)


@dataclass
class LogonSession:
    """A logon session (``Win32_LogonSession`` + ``Win32_LoggedOnUser``; ``klist sessions``), with its cached
    Kerberos ticket count. ``logon_type`` as LSA numbers it: 2 interactive, 3 network (SMB, WinRM), 10 RDP."""

    luid: int
    domain: str
    user: str
    kind: str = "Kerberos:Interactive"
    tickets: int = 2
    logon_type: int = 2


@dataclass
class SmbSession:
    """A session of the SMB server (``Get-SmbSession``); closing it ends its network logon."""

    session_id: int
    client_user: str  # DOMAIN\\user
    client_computer: str
    luid: int


@dataclass
class Process:
    """A process (``Win32_Process``) and the logon session it belongs to (``Win32_SessionProcess``)."""

    pid: int
    name: str
    session_id: int
    luid: int


@dataclass
class UserSession:
    """An interactive session as ``quser`` lists it."""

    user: str
    session_id: int
    session_name: str = "console"
    state: str = "Active"
    luid: int | None = None


def _port_matches(spec: str, port: int) -> bool:
    if spec.lower() == "any":
        return True
    if "-" in spec:
        lo, hi = spec.split("-", 1)
        return int(lo) <= port <= int(hi)
    return spec == str(port)


def display_address(token: str) -> str:
    """How Get-NetFirewallAddressFilter prints an address: IPv4 CIDR as address/mask, /32 as the bare address."""
    if "-" in token or token.lower() in ("any", "localsubnet"):
        return token
    try:
        net = ipaddress.ip_network(token, strict=False)
    except ValueError:
        return token
    if net.num_addresses == 1:
        return str(net.network_address)
    return f"{net.network_address}/{net.netmask}" if net.version == 4 else str(net)


def address_covers(token: str, ip: str) -> bool:
    """Whether a RemoteAddress token matches ``ip`` (``Any``, single, CIDR, address/mask or range)."""
    addr = ipaddress.ip_address(ip)
    if token.lower() == "any":
        return True
    if "-" in token:
        lo, hi = (ipaddress.ip_address(x) for x in token.split("-", 1))
        return lo.version == addr.version and int(lo) <= int(addr) <= int(hi)
    try:
        return addr in ipaddress.ip_network(token, strict=False)
    except (ValueError, TypeError):
        return False


class WindowsHost:
    """Everything the double's interpreter reads and changes. Guard with :attr:`lock` from other threads."""

    def __init__(self, *, hostname: str = "WINHOST", domain: str = "CORP", netsecurity: bool = True,
                 active_profile: str = "Public", ps_version: str = "5.1") -> None:
        self.lock = threading.RLock()
        self.hostname = hostname
        # WinRM's cmd shell starts ``powershell.exe``, which is Windows PowerShell 5.1 on every supported Windows;
        # "7.4" models a host where the connector's scripts would run under PowerShell 7 (pwsh) instead.
        self.ps_version = ps_version
        self.domain = domain
        self.netsecurity = netsecurity
        self.active_profile = active_profile
        self.profiles = {n: Profile(n) for n in ("Domain", "Private", "Public")}
        self.rules: list[Rule] = [
            Rule("WINRM-HTTP-In-TCP", "Windows Remote Management (HTTP-In)", "Windows Remote Management",
                 protocol="TCP", local_ports=["5985"]),
            Rule("WINRM-HTTPS-In-TCP", "Windows Remote Management (HTTPS-In)", "Windows Remote Management",
                 protocol="TCP", local_ports=["5986"]),
        ]
        self.gpo_profiles = {n: GpoProfile() for n in ("Domain", "Private", "Public")}
        # What the host's network configuration says (Get-DnsClientServerAddress, Win32_NetworkAdapterConfiguration).
        self.dns_servers: list[str] = ["10.0.0.53"]
        self.dhcp_servers: list[str] = ["10.0.0.1"]
        # Domain controllers this (domain-joined) host uses for NTLM pass-through (MS-APDS 3.1, MS-NRPC).
        self.domain_controllers: list[str] = ["10.0.0.2"]
        self.gpo_rules: list[Rule] = []
        self.tasks: dict[str, Task] = {}
        self.files: dict[str, str] = {}
        self.dirs: set[str] = {"c:\\programdata", "c:\\windows\\temp"}
        self.dir_security: dict[str, DirSecurity] = {}
        self.user_sids: dict[str, str] = {"Administrator": ADMINS_SID}
        self.logons: dict[int, LogonSession] = {0x3E7: LogonSession(0x3E7, "CORP", f"{hostname}$", "Negotiate:(0)", 3)}
        self.user_sessions: list[UserSession] = []
        self.smb_sessions: list[SmbSession] = []
        self.user_processes: list[Process] = []
        # WinRM shells by id: (owner "DOMAIN\\user", process id). The double's own shells are registered here too.
        self.wsman_shells: dict[str, tuple[str, int]] = {}
        self.language_mode = "FullLanguage"  # "ConstrainedLanguage" under an AppLocker/WDAC script policy
        self.locale = "en-US"  # what localised tools (quser, klist) print in
        # With the UTF-8 code page (65001) a BOM can precede a stream's bytes (pywinrm issue 111).
        self.output_bom = False
        self.processes: list[tuple[int, str, int, str]] = [(4, "System", 0, ""),
                                                           (612, "lsass", 0, "C:\\Windows\\system32\\lsass.exe")]
        self.tcp: list[tuple[str, int, str, int, str, int]] = [("0.0.0.0", 5986, "0.0.0.0", 0, "Listen", 4)]
        self.events: list[tuple[str, int, str]] = [
            ("2024-05-01 08:00:00", 4624, "An account was successfully logged on.")]
        self.deadman_fired: list[str] = []
        self.task_failures: list[str] = []
        # A script stopped part-way (tests): the next statement starting with ``stop_at`` is not run; the script
        # ends there with PowerShell's PipelineStoppedException ("The pipeline has been stopped.": what a
        # running pipeline throws when it is stopped — the shell's host process ended, the WinRM service
        # restarted; learn.microsoft.com System.Management.Automation.PipelineStoppedException), and what ran
        # before it stays, as on Windows. ``stop_reached`` is set on arrival; with ``stop_go`` the run first waits
        # for it (a test kills the agent meanwhile). Once: ``stop_at`` is cleared when it fires.
        self.stop_at: str | None = None
        self.stop_reached = threading.Event()
        self.stop_go: threading.Event | None = None
        # Execution policy per scope, as Get-ExecutionPolicy -List prints it (Windows Server default below).
        self.execution_policy: dict[str, str] = {"MachinePolicy": "Undefined", "UserPolicy": "Undefined",
                                                 "Process": "Undefined", "CurrentUser": "Undefined",
                                                 "LocalMachine": "RemoteSigned"}

    # -- files ------------------------------------------------------------------------------------------------
    def user_temp(self, user: str) -> str:
        return f"C:\\Users\\{user.split(chr(92))[-1]}\\AppData\\Local\\Temp"

    def ensure_dir(self, path: str, security: DirSecurity | None = None, *, owner: str = ADMINS_SID) -> None:
        """Create ``path`` (and parents); without ``security`` it inherits ProgramData's DACL."""
        parts = path.rstrip("\\").split("\\")
        for i in range(1, len(parts) + 1):
            key = "\\".join(parts[:i]).lower()
            if key not in self.dirs:
                self.dirs.add(key)
                self.dir_security[key] = security or DirSecurity(owner, False, INHERITED_FROM_PROGRAMDATA)

    def security_of(self, path: str) -> DirSecurity | None:
        return self.dir_security.get(path.rstrip("\\").lower())

    def move_dir(self, src: str, dst: str) -> None:
        """``[IO.Directory]::Move``: the folder and everything under it get the new name."""
        s, d = src.rstrip("\\").lower(), dst.rstrip("\\").lower()
        for table in (self.files, self.dir_security):
            for key in [k for k in table if k == s or k.startswith(s + "\\")]:
                table[d + key[len(s):]] = table.pop(key)  # type: ignore[attr-defined]
        self.dirs = {d + k[len(s):] if k == s or k.startswith(s + "\\") else k for k in self.dirs}

    def user_can_write(self, user: str, path: str) -> bool:
        """Whether local user ``user`` may create/replace ``path``: they own the folder (and so may rewrite its
        DACL), or the folder still inherits "Users: create files" and the file does not exist yet."""
        sec = self.security_of(path.rsplit("\\", 1)[0])
        if sec is None:
            return False
        sid = self.user_sids.get(user, f"S-1-5-21-1-{user}")
        if sec.owner == sid:
            return True
        return USERS_SID in sec.aces and not self.file_exists(path)

    def write_as_user(self, user: str, path: str, text: str) -> bool:
        """A local (non-admin) user writing a file; returns False when the ACL refuses it."""
        if not self.user_can_write(user, path):
            return False
        self.write_file(path, text)
        return True

    def write_file(self, path: str, text: str) -> None:
        parent = path.rsplit("\\", 1)[0].lower()
        if parent not in self.dirs:
            raise FileNotFoundError(f"Could not find a part of the path '{path}'.")
        self.files[path.lower()] = text

    def read_file(self, path: str) -> str:
        try:
            return self.files[path.lower()]
        except KeyError:
            raise FileNotFoundError(f"Could not find file '{path}'.") from None

    def file_exists(self, path: str) -> bool:
        return path.lower() in self.files

    def remove_file(self, path: str) -> bool:
        return self.files.pop(path.lower(), None) is not None

    # -- firewall ---------------------------------------------------------------------------------------------
    def group_rules(self, group: str) -> list[Rule]:
        return [r for r in self.rules if r.group.lower() == group.lower()]

    def rule_named(self, name: str) -> list[Rule]:
        return [r for r in self.rules if r.name.lower() == name.lower()]

    def _rule_applies(self, rule: Rule, direction: str, ip: str, port: int, profile: str,
                      protocol: str = "TCP") -> bool:
        """``port`` is the local port of an inbound flow, the remote port of an outbound one, or the ICMP type."""
        if rule.enabled != "True" or rule.direction != direction:
            return False
        if rule.profile != "Any" and profile not in rule.profile.replace(" ", "").split(","):
            return False
        if rule.protocol.upper() not in ("ANY", protocol.upper()):
            return False
        if protocol.upper().startswith("ICMP"):
            ports = rule.icmp_types
        else:
            ports = rule.local_ports if direction == "Inbound" else rule.remote_ports
        if not any(_port_matches(p, port) for p in ports):
            return False
        return any(address_covers(t, ip) for t in rule.remote)

    def effective_profile(self, name: str) -> Profile:
        """The ActiveStore view of a profile: each Group Policy setting beats the local one."""
        local, gpo = self.profiles[name], self.gpo_profiles[name]
        return Profile(name, gpo.enabled if gpo.enabled != "NotConfigured" else local.enabled,
                       gpo.inbound if gpo.inbound != "NotConfigured" else local.inbound,
                       gpo.outbound if gpo.outbound != "NotConfigured" else local.outbound)

    def local_rules_apply(self, profile: str) -> bool:
        return self.gpo_profiles[profile].allow_local_rules != "False"

    def active_rules(self) -> list[Rule]:
        """The ActiveStore: GPO rules, plus local rules for the profiles whose GPO lets local rules merge."""
        merged = [r for r in self.rules
                  if any(self.local_rules_apply(p) for p in self._rule_profiles(r))]
        return list(self.gpo_rules) + merged

    @staticmethod
    def _rule_profiles(rule: Rule) -> list[str]:
        return ["Domain", "Private", "Public"] if rule.profile == "Any" else rule.profile.replace(" ", "").split(",")

    def allows_inbound(self, ip: str, port: int, protocol: str = "TCP") -> bool:
        """Would Windows Firewall let a new flow from ``ip`` reach local ``port``? (ActiveStore)"""
        return self.allows("Inbound", ip, port, protocol)

    def allows_outbound(self, ip: str, port: int, protocol: str = "TCP") -> bool:
        """Would Windows Firewall let this host open a flow to ``ip``:``port``? (ActiveStore)"""
        return self.allows("Outbound", ip, port, protocol)

    def allows(self, direction: str, ip: str, port: int, protocol: str = "TCP") -> bool:
        """Block rules beat allow rules, allow rules beat the profile default (MS-FASP 2.2.34 FW_RULE_ACTION:
        only an authenticated "allow bypass" beats block, and the connector never writes one)."""
        with self.lock:
            prof = self.effective_profile(self.active_profile)
            if not prof.effective_enabled:
                return True
            rules = list(self.gpo_rules) + (self.rules if self.local_rules_apply(prof.name) else [])
            applicable = [r for r in rules if self._rule_applies(r, direction, ip, port, prof.name, protocol)]
            if any(r.action == "Block" for r in applicable):
                return False
            if any(r.action == "Allow" for r in applicable):
                return True
            default = prof.effective_inbound if direction == "Inbound" else prof.effective_outbound
            return default == "Allow"

    # -- logon sessions ---------------------------------------------------------------------------------------
    def end_logon_if_unused(self, luid: int) -> None:
        """LSA deletes a logon session when nothing references it any more (no process, no SMB session, no TS
        session); its Kerberos tickets go with it."""
        if luid == 0x3E7:
            return
        used = any(p.luid == luid for p in self.user_processes) or \
            any(s.luid == luid for s in self.smb_sessions) or any(u.luid == luid for u in self.user_sessions)
        if not used:
            self.logons.pop(luid, None)

    def logoff(self, session_id: int) -> bool:
        """``logoff <id>``: the TS session ends with every process in it; session 0 cannot be logged off."""
        match = [u for u in self.user_sessions if u.session_id == session_id]
        if session_id == 0 or not match:
            return False
        self.user_sessions = [u for u in self.user_sessions if u.session_id != session_id]
        gone = {p.luid for p in self.user_processes if p.session_id == session_id} | {u.luid for u in match if u.luid}
        self.user_processes = [p for p in self.user_processes if p.session_id != session_id]
        for luid in gone:
            if luid is not None:
                self.end_logon_if_unused(luid)
        return True

    # -- tasks ------------------------------------------------------------------------------------------------
    def effective_execution_policy(self, process: str | None) -> str:
        """The policy PowerShell applies to script *files*: the first scope that is set, in precedence order
        MachinePolicy > UserPolicy > Process > CurrentUser > LocalMachine (about_Execution_Policies,
        "Execution policy precedence"). A Group Policy scope beats ``-ExecutionPolicy`` (the Process scope)."""
        scopes = dict(self.execution_policy)
        if process:
            scopes["Process"] = process
        for scope in ("MachinePolicy", "UserPolicy", "Process", "CurrentUser", "LocalMachine"):
            value = scopes.get(scope, "Undefined")
            if value != "Undefined":
                return value
        return "RemoteSigned"  # Windows Server's default when every scope is Undefined

    def fire_task(self, name: str, run_script: object) -> None:
        """Run a scheduled task now, as its trigger would (``run_script(text)`` is the interpreter).

        ``-EncodedCommand`` is a command, not a script file, so execution policy does not apply to it;
        ``-File`` loads a script file, which ``AllSigned`` (our unsigned files) and ``Restricted`` refuse —
        then the task "runs", powershell.exe exits 1, and nothing is reverted."""
        import base64
        import re

        with self.lock:
            task = self.tasks[name]
            self.deadman_fired.append(name)
            args = task.arguments
            if len(task.command) + 1 + len(args) >= 32767:
                # CreateProcess refuses command lines of 32,767 characters or more: the task registered, but its
                # action never starts (the scheduler logs the launch failure).
                self.task_failures.append(f"{name}: command line too long for CreateProcess")
                return
            m = re.search(r"-EncodedCommand ([A-Za-z0-9+/=]+)", args)
            if m:
                script = base64.b64decode(m.group(1)).decode("utf-16-le")
            else:
                path = args.split("-File", 1)[1].strip().strip('"')
                pol = re.search(r"-ExecutionPolicy (\w+)", args)
                policy = self.effective_execution_policy(pol.group(1) if pol else None)
                if policy in ("AllSigned", "Restricted"):
                    self.task_failures.append(f"{name}: File {path} cannot be loaded. The file {path} is not "
                                              f"digitally signed (execution policy {policy}).")
                    return
                script = self.read_file(path)
        run_script(script)  # type: ignore[operator]
