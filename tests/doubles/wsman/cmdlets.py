"""Statement handlers of the double: NetSecurity cmdlets, schtasks, quser/klist/logoff, files, evidence.

Each handler takes the interpreter, the run state and the regex match (or the raw line for tokenized cmdlets),
changes :class:`~tests.doubles.wsman.host.WindowsHost` and writes output the way Windows would.
"""

from __future__ import annotations

import ipaddress
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.doubles.wsman.host import Rule, display_address
from tests.doubles.wsman.netsh import render_profiles, render_rules, run_netsh
from tests.doubles.wsman.pslang import PSError, Token, parse_params, tokenize

if TYPE_CHECKING:
    from tests.doubles.wsman.interpreter import Interpreter, _Run

Q = r"'(?:[^']|'')*'"
NETSH_FUNCTION = ("function Invoke-Netsh { $o = (& netsh.exe @args 2>&1 | Out-String); if ($LASTEXITCODE -ne 0) "
                  "{ throw ('netsh ' + ($args -join ' ') + ' failed: ' + $o.Trim()) }; $o }")
_PROFILE_FIELDS = ("Name = [string]$_.Name; Enabled = [string]$_.Enabled; DefaultInboundAction = "
                   "[string]$_.DefaultInboundAction; DefaultOutboundAction = [string]$_.DefaultOutboundAction")
_RULE_FIELDS = ("$a = $_ | Get-NetFirewallAddressFilter; $p = $_ | Get-NetFirewallPortFilter; [ordered]@{ "
                "Name = [string]$_.Name; DisplayName = [string]$_.DisplayName; Direction = [string]$_.Direction; "
                "Action = [string]$_.Action; Enabled = [string]$_.Enabled; Profile = [string]$_.Profile; "
                "RemoteAddress = @($a.RemoteAddress); Protocol = [string]$p.Protocol; LocalPort = @($p.LocalPort); "
                "RemotePort = @($p.RemotePort); IcmpType = @($p.IcmpType) }")
PROFILES_READ_RE = re.escape(f"$r.profiles = @(Get-NetFirewallProfile -All | ForEach-Object {{ [ordered]@{{ "
                             f"{_PROFILE_FIELDS} }} }})")
STORE_PROFILES_READ_RE = (r"\$r\.(active_profiles|gpo_profiles) = @\(Get-NetFirewallProfile -PolicyStore "
                          r"(ActiveStore|RSOP) \| " + re.escape(
                              f"ForEach-Object {{ [ordered]@{{ {_PROFILE_FIELDS}; AllowLocalFirewallRules = "
                              "[string]$_.AllowLocalFirewallRules } })"))
RULES_READ_RE = (r"\$r\.(rules|active_rules) = @\(Get-NetFirewallRule( -PolicyStore ActiveStore)? -Group (" + Q
                 + r") -ErrorAction SilentlyContinue \| " + re.escape(f"ForEach-Object {{ {_RULE_FIELDS} }})"))
_NETSECURITY = {"Get-NetFirewallProfile", "Get-NetFirewallRule", "New-NetFirewallRule", "Set-NetFirewallProfile",
                "Remove-NetFirewallRule"}


def _lit(quoted: str) -> str:
    return str(tokenize(quoted)[0].value)


def _need_netsecurity(it: Interpreter, name: str) -> None:
    if not it.host.netsecurity:
        raise PSError(f"The term '{name}' is not recognized as the name of a cmdlet, function, script file, or "
                      "operable program.", command=name, category="ObjectNotFound",
                      error_id="CommandNotFoundException", terminating=True)


# -- NetSecurity --------------------------------------------------------------------------------------------------
def read_profiles(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    _need_netsecurity(it, "Get-NetFirewallProfile")
    assert run.r is not None
    run.r["profiles"] = [{"Name": p.name, "Enabled": p.enabled, "DefaultInboundAction": p.inbound,
                          "DefaultOutboundAction": p.outbound} for p in it.host.profiles.values()]


def read_store_profiles(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    """``-PolicyStore ActiveStore``: what is enforced (GPO beats local); ``RSOP``: only what Group Policy sets."""
    _need_netsecurity(it, "Get-NetFirewallProfile")
    assert run.r is not None
    rows = []
    for name in ("Domain", "Private", "Public"):
        gpo = it.host.gpo_profiles[name]
        if m.group(2) == "RSOP":
            values = (gpo.enabled, gpo.inbound, gpo.outbound)
        else:
            eff = it.host.effective_profile(name)
            values = (eff.enabled, eff.inbound, eff.outbound)
        rows.append({"Name": name, "Enabled": values[0], "DefaultInboundAction": values[1],
                     "DefaultOutboundAction": values[2], "AllowLocalFirewallRules": gpo.allow_local_rules})
    run.r[m.group(1)] = rows


def read_rules(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    """Without ``-PolicyStore`` the cmdlet reads the local PersistentStore; the ActiveStore is what is enforced
    (Get-NetFirewallRule docs: "-PolicyStore ... ActiveStore")."""
    _need_netsecurity(it, "Get-NetFirewallRule")
    assert run.r is not None
    source = it.host.active_rules() if m.group(2) else it.host.rules
    group = _lit(m.group(3))
    run.r[m.group(1)] = [{"Name": r.name, "DisplayName": r.display_name, "Direction": r.direction, "Action": r.action,
                       "Enabled": r.enabled, "Profile": r.profile,
                       "RemoteAddress": [display_address(t) for t in r.remote], "Protocol": r.protocol,
                       "LocalPort": list(r.local_ports), "RemotePort": list(r.remote_ports),
                       "IcmpType": list(r.icmp_types)} for r in source if r.group.lower() == group.lower()]


def block_all_profiles(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    _need_netsecurity(it, "Set-NetFirewallProfile")
    for p in it.host.profiles.values():
        p.enabled, p.inbound, p.outbound = "True", "Block", "Block"


def _one(params: dict[str, Token | None], key: str, allowed: set[str] | None = None, default: str = "") -> str:
    tok = params.get(key)
    if tok is None:
        return default
    value = str(tok.value)
    if allowed is not None and value not in allowed:
        raise PSError(f"Cannot bind parameter '{key}'. Cannot convert value \"{value}\" to type enum. Specify one "
                      f"of the following enumerator names and try again: {', '.join(sorted(allowed))}",
                      category="InvalidArgument", error_id="ParameterArgumentTransformationError")
    return value


def _many(params: dict[str, Token | None], key: str) -> list[str]:
    tok = params.get(key)
    if tok is None:
        return []
    return list(tok.value) if tok.kind == "arr" else [str(tok.value)]


def _valid_address(token: str) -> bool:
    if token.lower() in ("any", "localsubnet"):
        return True
    try:
        if "-" in token:
            a, b = (ipaddress.ip_address(x) for x in token.split("-", 1))
            return a.version == b.version and int(a) <= int(b)
        ipaddress.ip_network(token, strict=False)
        return True
    except ValueError:
        return False


def _new_rule(it: Interpreter, run: _Run, tokens: list[Token]) -> None:
    _need_netsecurity(it, "New-NetFirewallRule")
    params, _ = parse_params("New-NetFirewallRule", tokens, {"Name", "DisplayName", "Group", "Direction", "Action",
                                                             "Protocol", "LocalPort", "RemoteAddress", "Profile",
                                                             "RemotePort", "IcmpType",
                                                             "Enabled"})
    name = _one(params, "Name")
    if not name or it.host.rule_named(name):
        raise PSError("New-NetFirewallRule : Cannot create a file when that file already exists.",
                      command="New-NetFirewallRule", category="AlreadyExists", error_id="Windows System Error 183")
    remote = _many(params, "RemoteAddress") or ["Any"]
    bad = [a for a in remote if not _valid_address(a)]
    if bad:
        raise PSError(f"The address is invalid: {bad[0]}. Addresses may be specified as IP addresses, ranges, or "
                      "subnets.", command="New-NetFirewallRule", category="InvalidArgument",
                      error_id="Windows System Error 87")
    protocol = _one(params, "Protocol", default="Any")
    ports = _many(params, "LocalPort") or ["Any"]
    rports = _many(params, "RemotePort") or ["Any"]
    icmp = _many(params, "IcmpType") or ["Any"]
    if (ports != ["Any"] or rports != ["Any"]) and protocol.upper() not in ("TCP", "UDP"):
        raise PSError("The port filter is not valid: a port can only be given with protocol TCP or UDP.",
                      command="New-NetFirewallRule", category="InvalidArgument", error_id="Windows System Error 87")
    if icmp != ["Any"] and protocol.upper() not in ("ICMPV4", "ICMPV6"):
        raise PSError("The ICMP type filter is only valid with protocol ICMPv4 or ICMPv6.",
                      command="New-NetFirewallRule", category="InvalidArgument", error_id="Windows System Error 87")
    it.host.rules.append(Rule(
        name=name, display_name=_one(params, "DisplayName", default=name), group=_one(params, "Group"),
        direction=_one(params, "Direction", {"Inbound", "Outbound"}, "Inbound"),
        action=_one(params, "Action", {"Allow", "Block"}, "Allow"),
        enabled=_one(params, "Enabled", {"True", "False"}, "True"),
        profile=_one(params, "Profile", default="Any"), remote=remote,
        protocol=protocol.upper() if protocol.upper() in ("TCP", "UDP") else protocol, local_ports=ports,
        remote_ports=rports, icmp_types=icmp))


def _set_profile(it: Interpreter, run: _Run, tokens: list[Token]) -> None:
    _need_netsecurity(it, "Set-NetFirewallProfile")
    params, _ = parse_params("Set-NetFirewallProfile", tokens,
                             {"Name", "Enabled", "DefaultInboundAction", "DefaultOutboundAction"})
    name = _one(params, "Name", {"Domain", "Private", "Public"})
    p = it.host.profiles[name]
    p.enabled = _one(params, "Enabled", {"True", "False", "NotConfigured"}, p.enabled)
    p.inbound = _one(params, "DefaultInboundAction", {"Allow", "Block", "NotConfigured"}, p.inbound)
    p.outbound = _one(params, "DefaultOutboundAction", {"Allow", "Block", "NotConfigured"}, p.outbound)


def _silently(params: dict[str, Token | None]) -> bool:
    tok = params.get("ErrorAction")
    return tok is not None and str(tok.value) == "SilentlyContinue"


def _remove_rule(it: Interpreter, run: _Run, tokens: list[Token]) -> None:
    _need_netsecurity(it, "Remove-NetFirewallRule")
    params, _ = parse_params("Remove-NetFirewallRule", tokens, {"Group", "ErrorAction"})
    group = _one(params, "Group")
    victims = it.host.group_rules(group)
    if not victims:
        if _silently(params):
            return
        raise PSError(f"No MSFT_NetFirewallRule objects found with property 'Group' equal to '{group}'.  Verify "
                      "the value of the property and retry.", command="Remove-NetFirewallRule",
                      category="ObjectNotFound", error_id="CmdletizationQuery_NotFound_Group")
    it.host.rules = [r for r in it.host.rules if r not in victims]


def _remove_item(it: Interpreter, run: _Run, tokens: list[Token]) -> None:
    params, _ = parse_params("Remove-Item", tokens, {"LiteralPath", "Force", "ErrorAction"})
    path = _one(params, "LiteralPath")
    if not it.host.remove_file(path) and not _silently(params):
        raise PSError(f"Cannot find path '{path}' because it does not exist.", command="Remove-Item",
                      category="ObjectNotFound", error_id="PathNotFound")


def _new_item(it: Interpreter, run: _Run, tokens: list[Token]) -> None:
    params, _ = parse_params("New-Item", tokens, {"ItemType", "Force", "Path"})
    if _one(params, "ItemType") != "Directory":
        raise PSError("New-Item : only directories in the double", command="New-Item")
    it.host.ensure_dir(_one(params, "Path"))


def invoke_netsh(it: Interpreter, run: _Run, args: list[str]) -> str:
    if not run.netsh_fn:
        raise PSError("The term 'Invoke-Netsh' is not recognized as the name of a cmdlet, function, script file, "
                      "or operable program.", command="Invoke-Netsh", category="ObjectNotFound",
                      error_id="CommandNotFoundException", terminating=True)
    out, run.last_exit = run_netsh(it.host, args)
    if run.last_exit != 0:
        msg = f"netsh {' '.join(args)} failed: {out.strip()}"
        raise PSError(msg, category="OperationStopped", error_id=msg, terminating=True)
    return out


def _netsh_args(tokens: list[Token]) -> tuple[list[str], bool]:
    args, out_null = [], False
    for i, t in enumerate(tokens):
        if t.kind == "pipe":
            out_null = tokens[i + 1:] == [Token("word", "Out-Null")]
            if not out_null:
                raise PSError("unsupported pipeline in the double")
            break
        if t.kind not in ("str", "word"):
            raise PSError("netsh arguments must be literals")
        args.append(str(t.value))
    return args, out_null


def dispatch(it: Interpreter, run: _Run, line: str) -> None:
    """Tokenized cmdlet statements (parameters in any order, values as literals)."""
    if line.startswith("& netsh.exe "):
        args, out_null = _netsh_args(tokenize(line[len("& netsh.exe "):]))
        out, run.last_exit = run_netsh(it.host, args)
        if not out_null:
            run.out.append(out)
        return
    tokens = tokenize(line)
    name, rest = str(tokens[0].value), tokens[1:]
    if name == "Invoke-Netsh":
        args, out_null = _netsh_args(rest)
        out = invoke_netsh(it, run, args)
        if not out_null:
            run.out.append(out)
        return
    handlers: dict[str, Callable[[Interpreter, _Run, list[Token]], None]] = {
        "New-NetFirewallRule": _new_rule, "Set-NetFirewallProfile": _set_profile,
        "Remove-NetFirewallRule": _remove_rule, "Remove-Item": _remove_item, "New-Item": _new_item}
    handlers[name](it, run, rest)


# -- native commands --------------------------------------------------------------------------------------------
def native_stderr(it: Interpreter, run: _Run, exe: str, text: str) -> str:
    """What PowerShell does with a native command's stderr redirected by ``2>&1``; returns the merged text.

    Windows PowerShell 5.1 wraps each redirected stderr line in an ErrorRecord (NativeCommandError); with
    ``$ErrorActionPreference = 'Stop'`` the first one terminates the script — even though the command itself
    may have succeeded or failed harmlessly (PowerShell issues #3996 and #4002,
    github.com/PowerShell/PowerShell/issues/3996). PowerShell 7.2 made stderr bypass the error-action
    preference (PR #13361, "PSNotApplyErrorActionToStderr" made mainstream), so there the lines are plain output.
    """
    if not text:
        return ""
    if it.host.ps_version.startswith("5") and run.eap == "Stop":
        first = text.strip().splitlines()[0]
        raise PSError(first, command=exe, category="NotSpecified", error_id="NativeCommandError", terminating=True)
    return text


# -- scheduled tasks ----------------------------------------------------------------------------------------------
_TASK_NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"


def schtasks_query(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    if _lit(m.group(1)) not in it.host.tasks:
        # schtasks writes this to stderr and exits 1 for a task that does not exist.
        native_stderr(it, run, "schtasks.exe", "ERROR: The system cannot find the file specified.\r\n")
    run.last_exit = 0 if _lit(m.group(1)) in it.host.tasks else 1
    run.r["deadman_task"] = run.last_exit == 0


def _parse_task_xml(text: str) -> tuple[str, str, str]:
    """``(StartBoundary, Command, Arguments)`` of a task definition, or ``ValueError`` like the real parser."""
    root = ET.fromstring(re.sub(r"^<\?xml[^>]*\?>", "", text.strip()))
    start = root.find(f"{_TASK_NS}Triggers/{_TASK_NS}TimeTrigger/{_TASK_NS}StartBoundary")
    exe = root.find(f"{_TASK_NS}Actions/{_TASK_NS}Exec")
    if start is None or not start.text or exe is None:
        raise ValueError("missing trigger or action")
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", start.text):
        raise ValueError(f"bad StartBoundary {start.text!r}")
    command = exe.findtext(f"{_TASK_NS}Command") or ""
    arguments = exe.findtext(f"{_TASK_NS}Arguments") or ""
    return start.text, command, arguments


def schtasks_create(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    name, path = _lit(m.group(1)), _lit(m.group(2))
    try:
        text = it.host.read_file(path)
        start, command, arguments = _parse_task_xml(text)
    except (FileNotFoundError, ET.ParseError, ValueError) as exc:
        run.o = native_stderr(it, run, "schtasks.exe", f"ERROR: The task XML is malformed. ({exc})\r\n")
        run.last_exit = 1
        return
    from tests.doubles.wsman.host import Task

    it.host.tasks[name] = Task(name, text, start, command, arguments)
    run.o, run.last_exit = f'SUCCESS: The scheduled task "{name}" has successfully been created.\r\n', 0


def register_task(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    """``Register-ScheduledTask -TaskName X -Xml $xml -Force`` (ScheduledTasks module, Windows 8 / 2012+)."""
    from tests.doubles.wsman.host import Task

    name = _lit(m.group(1))
    try:
        start, command, arguments = _parse_task_xml(run.vars.get("xml", ""))
    except (ET.ParseError, ValueError) as exc:
        raise PSError(f"Register-ScheduledTask : The task XML is malformed. ({exc})", command="Register-ScheduledTask",
                      category="NotSpecified", error_id="HRESULT 0x8004131a,Register-ScheduledTask") from None
    it.host.tasks[name] = Task(name, run.vars["xml"], start, command, arguments)


def get_task(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    """``[bool](Get-ScheduledTask -TaskName X -ErrorAction SilentlyContinue)``: a missing task is a silenced
    non-terminating CIM error (no native stderr involved)."""
    assert run.r is not None
    run.r["deadman_task"] = _lit(m.group(1)) in it.host.tasks


def unregister_task(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    name = _lit(m.group(1))
    if it.host.tasks.pop(name, None) is None and not m.group(2):
        raise PSError(f"No MSFT_ScheduledTask objects found with property 'TaskName' equal to '{name}'.  Verify "
                      "the value of the property and retry.", command="Unregister-ScheduledTask",
                      category="ObjectNotFound", error_id="CmdletizationQuery_NotFound_TaskName")


def _raise(msg: str) -> None:
    raise ValueError(msg)


def schtasks_delete(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    name = _lit(m.group(1))
    if it.host.tasks.pop(name, None) is None:
        run.o = native_stderr(it, run, "schtasks.exe", "ERROR: The system cannot find the file specified.\r\n")
        run.last_exit = 1
    else:
        run.o, run.last_exit = f'SUCCESS: The scheduled task "{name}" was successfully deleted.\r\n', 0


# -- sessions and tickets -----------------------------------------------------------------------------------------
_QUSER_DE = {"Active": "Aktiv", "Disc": "Getr."}


def render_quser(it: Interpreter) -> str:
    """``quser`` as the host's display language prints it. de-DE header, states and dates follow a German Windows
    capture (github.com/Fr3db3rt/Windows-For-Kids README: "BENUTZERNAME  SITZUNGSNAME  ID  STATUS  LEERLAUF
    ANMELDEZEIT", "Aktiv", "Getr.", "Kein", "28.04.2025 12:03"). The empty case keeps the English text: its German
    wording is not modelled, and nothing parses it."""
    if not it.host.user_sessions:
        return "No User exists for *\r\n"
    german = it.host.locale == "de-DE"
    head = (" BENUTZERNAME          SITZUNGSNAME       ID  STATUS  LEERLAUF   ANMELDEZEIT" if german else
            " USERNAME              SESSIONNAME        ID  STATE   IDLE TIME  LOGON TIME")
    lines = [head]
    for s in it.host.user_sessions:
        state = _QUSER_DE.get(s.state, s.state) if german else s.state
        idle, when = ("Kein", "01.05.2024 08:00") if german else ("none", "5/1/2024 8:00 AM")
        lines.append(f" {s.user[:20]:<22}{s.session_name:<17}{s.session_id:>4}  {state:<6}{idle:>11}  {when}")
    return "\r\n".join(lines) + "\r\n"


def quser_read(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    # With nobody logged on quser writes "No User exists for *" to stderr and exits 1.
    text = render_quser(it)
    run.r["quser"] = native_stderr(it, run, "quser.exe", text) if not it.host.user_sessions else text
    run.last_exit = 0 if it.host.user_sessions else 1


def klist_sessions_read(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    lines = ["", "Current LogonId is 0:0x3e7"]
    for i, s in enumerate(it.host.logons.values()):
        lines.append(f"[{i}] Session 0 0:0x{s.luid:x} {s.domain}\\{s.user} {s.kind}")
    run.r["klist"] = "\r\n".join(lines) + "\r\n"


def klist_tickets_read(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    assert run.r is not None
    luid = int(m.group(2), 16)
    s = it.host.logons.get(luid)
    if s is None:
        text = (f"Current LogonId is 0:0x3e7\r\nTargeted LogonId is 0:0x{luid:x}\r\nklist failed with "
                "0x8009030e/-2146893042: No credentials are available in the security package\r\n")
        run.last_exit = 1
    else:
        text = (f"\r\nCurrent LogonId is 0:0x3e7\r\nTargeted LogonId is 0:0x{luid:x}\r\n\r\n"
                f"Cached Tickets: ({s.tickets})\r\n")
        run.last_exit = 0
    run.r["0x" + m.group(1)] = text


def klist_purge(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    s = it.host.logons.get(int(m.group(1), 16))
    if s is None:
        run.last_exit = 1
        return
    s.tickets = 0
    run.last_exit = 0


def logoff(it: Interpreter, run: _Run, m: re.Match[str]) -> None:
    sid = int(m.group(1))
    match = [s for s in it.host.user_sessions if s.session_id == sid]
    if not match:
        run.out.append(f"Invalid session ID {sid}\r\n")
        run.last_exit = 1
        return
    it.host.user_sessions.remove(match[0])
    if match[0].luid is not None:
        it.host.logons.pop(match[0].luid, None)
    run.last_exit = 0


# -- evidence -----------------------------------------------------------------------------------------------------
def _ev(key: str, text: Callable[[Interpreter], str]) -> Callable[[Interpreter, Any, re.Match[str]], None]:
    def handler(it: Interpreter, run: Any, m: re.Match[str]) -> None:
        run.r[key] = text(it)
    return handler


def _processes(it: Interpreter) -> str:
    rows = ["", "  Id ProcessName SessionId StartTime Path", "  -- ----------- --------- --------- ----"]
    rows += [f"{pid:>4} {name} {sess} 5/1/2024 {path}" for pid, name, sess, path in it.host.processes]
    return "\r\n".join(rows) + "\r\n"


def _tcp(it: Interpreter) -> str:
    if not it.host.netsecurity:
        rows = ["", "Active Connections", "",
                "  Proto  Local Address          Foreign Address        State           PID"]
        rows += [f"  TCP    {la}:{lp:<16} {ra}:{rp:<16} {st.upper():<15} {pid}"
                 for la, lp, ra, rp, st, pid in it.host.tcp]
        return "\r\n".join(rows) + "\r\n"
    rows = ["", "LocalAddress LocalPort RemoteAddress RemotePort State OwningProcess"]
    rows += [f"{la} {lp} {ra} {rp} {st} {pid}" for la, lp, ra, rp, st, pid in it.host.tcp]
    return "\r\n".join(rows) + "\r\n"


def _events(it: Interpreter, limit: int) -> str:
    chosen = [e for e in it.host.events if e[1] in (4624, 4625)][:limit]
    return "".join(f"\r\nTimeCreated : {t}\r\nId          : {i}\r\nMessage     : {msg}\r\n" for t, i, msg in chosen)


def evidence_statements() -> list[tuple[str, Callable[..., None]]]:
    def events(it: Interpreter, run: Any, m: re.Match[str]) -> None:
        run.r["security_events.txt"] = _events(it, int(m.group(1)))

    return [
        (re.escape("$r.'processes.txt' = (Get-Process | Sort-Object Id | Format-Table -AutoSize Id, ProcessName, "
                   "SessionId, StartTime, Path | Out-String -Width 400)"), _ev("processes.txt", _processes)),
        (re.escape("$r.'tcp_connections.txt' = if (Get-Command Get-NetTCPConnection -ErrorAction SilentlyContinue) "
                   "{ Get-NetTCPConnection | Sort-Object State, LocalPort | Format-Table -AutoSize LocalAddress, "
                   "LocalPort, RemoteAddress, RemotePort, State, OwningProcess | Out-String -Width 400 } "
                   "else { (& netstat.exe -ano | Out-String) }"), _ev("tcp_connections.txt", _tcp)),
        (re.escape("$r.'sessions.txt' = (& quser.exe 2>&1 | Out-String)"), _ev("sessions.txt", render_quser)),
        (re.escape("$r.'security_events.txt' = (Get-WinEvent -FilterHashtable @{ LogName = 'Security'; "
                   "Id = 4624, 4625 } -MaxEvents ") + r"(\d+)" + re.escape(
            " -ErrorAction SilentlyContinue | Format-List TimeCreated, Id, Message | Out-String -Width 400)"), events),
        (re.escape("$r.'firewall.txt' = (& netsh.exe 'advfirewall' 'show' 'allprofiles' | Out-String) + "
                   "(& netsh.exe 'advfirewall' 'firewall' 'show' 'rule' 'name=all' | Out-String)"),
         _ev("firewall.txt", lambda it: render_profiles(it.host) + render_rules(it.host.rules, False))),
    ]
