"""What the double runs: cmd.exe command lines and a recognizer for the PowerShell statements the connector sends.

Not a PowerShell implementation: each script line must be one of the statement forms below (values are parsed
from single-quoted literals with PowerShell's quoting rules). Anything else fails the way PowerShell fails on an
unknown command — CLIXML on stderr, exit code 1 — so a connector that sends something new breaks a test.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.doubles.wsman import cmdlets
from tests.doubles.wsman.host import ADMINS_SID, SYSTEM_SID, USERS_SID, DirSecurity, WindowsHost
from tests.doubles.wsman.netsh import run_netsh
from tests.doubles.wsman.pslang import PSError, clixml_error, tokenize
from tests.doubles.wsman.sessions import statements as session_statements

__all__ = ["CMD_LINE_LIMIT", "Interpreter"]

CMD_LINE_LIMIT = 8191
Q = r"'(?:[^']|'')*'"
_TEMPFILE = r"ir-[0-9a-f]{8,32}\.b64"
_CLM_BLOCKED = re.compile(r"\[(IO\.|Convert\]|Text\.Encoding|ScriptBlock\])|New-Object Security\.|\.GetOwner\(|"
                          r"\.GetAccessRules\(")


def _lit(quoted: str) -> str:
    tok = tokenize(quoted)
    assert len(tok) == 1 and tok[0].kind == "str", quoted
    return str(tok[0].value)


@dataclass
class _Run:
    """State of one script run: variables PowerShell would hold, and the streams."""

    eap: str = "Continue"
    r: dict[str, Any] | None = None
    o: str = ""
    when: str = ""
    last_exit: int = 0
    netsh_fn: bool = False
    vars: dict[str, str] = field(default_factory=dict)
    out: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Interpreter:
    """Runs command lines for ``user`` against ``host``; every decoded script is appended to ``journal``."""

    def __init__(self, host: WindowsHost, user: str, journal: list[str]) -> None:
        self.host = host
        self.user = user
        self.journal = journal
        self._statements: list[tuple[re.Pattern[str], Callable[..., None]]] = [
            (re.compile(p), fn) for p, fn in self._table()]

    # -- cmd.exe ----------------------------------------------------------------------------------------------
    def run_cmdline(self, line: str) -> tuple[str, str, int]:
        """stdout, stderr, exit code of one WinRS command line (cmd.exe semantics for the forms we know)."""
        if len(line) > CMD_LINE_LIMIT:
            return "", "The command line is too long.\r\n", 1
        temp = self.host.user_temp(self.user)
        m = re.fullmatch(r"powershell -NoProfile -NonInteractive -EncodedCommand ([A-Za-z0-9+/=]+)", line)
        if m:
            try:
                script = base64.b64decode(m.group(1), validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError):
                return "", ("Cannot process the command because the value specified with -EncodedCommand is not "
                            "properly encoded. The value must be Base64 encoded.\r\n"), 1
            return self.run_script(script)
        m = re.fullmatch(rf'type nul > "%TEMP%\\({_TEMPFILE})"', line)
        if m:
            self.host.write_file(f"{temp}\\{m.group(1)}", "")
            return "", "", 0
        m = re.fullmatch(rf'\(echo ([A-Za-z0-9+/=]+)\)>> "%TEMP%\\({_TEMPFILE})"', line)
        if m:
            path = f"{temp}\\{m.group(2)}"
            old = self.host.files.get(path.lower(), "")
            self.host.write_file(path, old + m.group(1) + "\r\n")
            return "", "", 0
        word = line.split(" ", 1)[0]
        return "", (f"'{word}' is not recognized as an internal or external command,\r\n"
                    "operable program or batch file.\r\n"), 1

    # -- PowerShell -------------------------------------------------------------------------------------------
    def run_script(self, script: str) -> tuple[str, str, int]:
        """Run a script; a terminating error stops it (state changes before it stay, like on Windows)."""
        self.journal.append(script)
        run = _Run()
        try:
            self._exec(script, run)
        except _Abort as stop:
            run.errors.append(clixml_error(stop.err, stop.line_no, stop.line))
            return "".join(run.out), "".join(run.errors), 1
        return "".join(run.out), "".join(run.errors), 1 if run.errors else 0

    def _exec(self, script: str, run: _Run) -> None:
        for no, raw in enumerate(script.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            if self.host.stop_at is not None and line.startswith(self.host.stop_at):
                self._stop(no, line)
            try:
                self._statement(line, run)
            except PSError as err:
                if err.terminating or run.eap == "Stop":
                    raise _Abort(err, no, line) from None
                run.errors.append(clixml_error(err, no, line))

    def _stop(self, no: int, line: str) -> None:
        """The script stopped before ``line`` (see ``WindowsHost.stop_at``): a terminating error, nothing after."""
        host = self.host
        host.stop_at = None
        host.stop_reached.set()
        if host.stop_go is not None:
            host.stop_go.wait(60)
        raise _Abort(PSError("The pipeline has been stopped.", category="OperationStopped",
                             error_id="PipelineStopped", terminating=True), no, line)

    def _statement(self, line: str, run: _Run) -> None:
        if self.host.language_mode == "ConstrainedLanguage" and _CLM_BLOCKED.search(line):
            # about_Language_Modes: in ConstrainedLanguage only core types' methods may be invoked and
            # New-Object is limited to allowed types; [IO.File], [Convert], Get-Acl's rule methods are not.
            raise PSError("Cannot invoke method. Method invocation is supported only on core types in this language "
                          "mode.", category="InvalidOperation",
                          error_id="MethodInvocationNotSupportedInConstrainedLanguage", terminating=True)
        for pattern, fn in self._statements:
            m = pattern.fullmatch(line)
            if m:
                fn(run, m)
                return
        if line.startswith(("New-NetFirewallRule ", "Set-NetFirewallProfile ", "Remove-NetFirewallRule ",
                            "Remove-Item ", "New-Item ", "Invoke-Netsh ", "& netsh.exe ")):
            cmdlets.dispatch(self, run, line)
            return
        word = line.split(" ", 1)[0]
        raise PSError(f"The term '{word}' is not recognized as the name of a cmdlet, function, script file, or "
                      "operable program. Check the spelling of the name, or if a path was included, verify that "
                      "the path is correct and try again.", command=word, category="ObjectNotFound",
                      error_id="CommandNotFoundException", terminating=True)

    def _table(self) -> list[tuple[str, Callable[..., None]]]:
        c = cmdlets

        def b(fn: Callable[..., None]) -> Callable[..., None]:
            return functools.partial(fn, self)

        return [
            (rf"\$ErrorActionPreference = ({Q})", self._eap),
            (r"\$ProgressPreference = 'SilentlyContinue'", lambda run, m: None),
            (r"\$r = \[ordered\]@\{\}", lambda run, m: setattr(run, "r", {})),
            (r"\$r \| ConvertTo-Json( -Depth \d)? -Compress", self._to_json),
            (re.escape("[string]$ExecutionContext.SessionState.LanguageMode"),
             lambda run, m: run.out.append(self.host.language_mode + "\r\n")),
            ((r"if \(Get-Command New-NetFirewallRule -ErrorAction SilentlyContinue\) \{ 'netsecurity' \} "
             r"else \{ 'netsh' \}"), lambda run, m: run.out.append(
                 ("netsecurity" if self.host.netsecurity else "netsh") + "\r\n")),
            (re.escape(c.NETSH_FUNCTION), lambda run, m: setattr(run, "netsh_fn", True)),
            (rf"& schtasks\.exe /Query /TN ({Q}) 2>&1 \| Out-Null; \$r\.deadman_task = \(\$LASTEXITCODE -eq 0\)",
             b(c.schtasks_query)),
            (rf"\$d = ({Q})", lambda run, m: run.vars.__setitem__("d", _lit(m.group(1)))),
            (re.escape("$a = if ([IO.Directory]::Exists($d)) { Get-Acl -LiteralPath $d } else { $null }"),
             self._get_acl),
            (re.escape("$trusted = $a -ne $null -and $a.AreAccessRulesProtected -and @('S-1-5-18','S-1-5-32-544') "
                       "-contains $a.GetOwner([Security.Principal.SecurityIdentifier]).Value -and "
                       "@($a.GetAccessRules($true, $true, [Security.Principal.SecurityIdentifier]) | Where-Object { "
                       "@('S-1-5-18','S-1-5-32-544') -notcontains $_.IdentityReference.Value }).Count -eq 0"),
             self._trusted),
            (re.escape("$r.state_dir_exists = $a -ne $null"),
             lambda run, m: run.r.__setitem__("state_dir_exists", bool(run.vars.get("a")))),
            (re.escape("$r.state_dir_trusted = $trusted"),
             lambda run, m: run.r.__setitem__("state_dir_trusted", run.vars.get("trusted") == "1")),
            (re.escape("if ($a -ne $null -and -not $trusted) { [IO.Directory]::Move($d, $d + '.untrusted-' + "
                       "[DateTime]::UtcNow.Ticks); $a = $null }"), self._move_untrusted),
            (re.escape("if ($a -eq $null) { $s = New-Object Security.AccessControl.DirectorySecurity; "
                       "$s.SetSecurityDescriptorSddlForm('") + r"([^']*)"
             + re.escape("'); [void][IO.Directory]::CreateDirectory($d, $s) }"), self._create_protected_dir),
            (rf"\$r\.reverted_by_deadman = \$trusted -and \[IO\.File\]::Exists\(({Q})\)", self._marker_exists),
            ((rf"if \(\$r\.reverted_by_deadman\) \{{ \$r\.reverted_at = "
             rf"\[IO\.File\]::ReadAllText\(({Q})\)\.Trim\(\) \}}"),
             self._marker_read),
            ((rf"if \(\$trusted -and \[IO\.File\]::Exists\(({Q})\)\) \{{ "
              rf"\$r\.saved = \[IO\.File\]::ReadAllText\(({Q})\) \}}"),
             self._saved_read),
            ((rf"\[IO\.File\]::WriteAllText\(({Q}), \[Text\.Encoding\]::UTF8\.GetString\(\[Convert\]::"
             rf"FromBase64String\('([A-Za-z0-9+/=]*)'\)\)(\.Replace\('@WHEN@', \$when\))?"
             r"(, \[Text\.Encoding\]::(?:Unicode|UTF8))?\)"), self._write_b64),
            (rf"\[IO\.File\]::WriteAllText\(({Q}), \(Get-Date\)\.ToUniversalTime\(\)\.ToString\('o'\)\)",
             self._write_now),
            (r"\$when = \(Get-Date\)\.AddMinutes\((\d+)\)\.ToString\('s'\)", self._when),
            (r"\$when", lambda run, m: run.out.append(run.when + "\r\n")),
            ((r"\$xml = \[Text\.Encoding\]::UTF8\.GetString\(\[Convert\]::FromBase64String\('([A-Za-z0-9+/=]*)'\)\)"
              r"\.Replace\('@WHEN@', \$when\)"), self._xml_var),
            (rf"Register-ScheduledTask -TaskName ({Q}) -Xml \$xml -Force \| Out-Null", b(c.register_task)),
            (rf"\$r\.deadman_task = \[bool\]\(Get-ScheduledTask -TaskName ({Q}) -ErrorAction SilentlyContinue\)",
             b(c.get_task)),
            (rf"Unregister-ScheduledTask -TaskName ({Q}) -Confirm:\$false( -ErrorAction SilentlyContinue)?",
             b(c.unregister_task)),
            (rf"\$o = \(& schtasks\.exe /Create /TN ({Q}) /XML ({Q}) /F 2>&1 \| Out-String\)", b(c.schtasks_create)),
            (rf"\$o = \(& schtasks\.exe /Delete /TN ({Q}) /F 2>&1 \| Out-String\)", b(c.schtasks_delete)),
            (rf"& schtasks\.exe /Delete /TN ({Q}) /F \| Out-Null", b(c.schtasks_delete)),
            (rf"if \(\$LASTEXITCODE -ne 0\) \{{ throw \(({Q}) \+ \$o\.Trim\(\)\) \}}", self._throw_with_o),
            (rf"if \(\$LASTEXITCODE -ne 0\) \{{ throw \(({Q})\) \}}", self._throw),
            (rf"Write-Output ({Q})", lambda run, m: run.out.append(_lit(m.group(1)) + "\r\n")),
            (c.PROFILES_READ_RE, b(c.read_profiles)),
            (c.RULES_READ_RE, b(c.read_rules)),
            (re.escape("$r.dns_servers = @(Get-DnsClientServerAddress | ForEach-Object { $_.ServerAddresses } | "
                       "Where-Object { $_ })"), lambda run, m: run.r.__setitem__(
                           "dns_servers", [*self.host.dns_servers, "fec0:0:0:ffff::1%1"])),
            (re.escape("$r.dhcp_servers = @(Get-CimInstance -ClassName Win32_NetworkAdapterConfiguration -Filter "
                       "'DHCPEnabled = TRUE' | ForEach-Object { $_.DHCPServer } | Where-Object { $_ })"),
             lambda run, m: run.r.__setitem__("dhcp_servers", list(self.host.dhcp_servers))),
            (re.escape("$r.computer_name = $env:COMPUTERNAME"),
             lambda run, m: run.r.__setitem__("computer_name", self.host.hostname)),
            (c.STORE_PROFILES_READ_RE, b(c.read_store_profiles)),
            (r"Set-NetFirewallProfile -All -Enabled True -DefaultInboundAction Block -DefaultOutboundAction Block",
             b(c.block_all_profiles)),
            (r"\$r\.profiles_text = \(Invoke-Netsh 'advfirewall' 'show' 'allprofiles'\)", self._netsh_profiles),
            ((r"\$r\.rules_text = \(& netsh\.exe 'advfirewall' 'firewall' 'show' 'rule' 'name=all' 'verbose' \| "
             r"Out-String\)"), self._netsh_rules),
            (r"\$r\.quser = \(& quser\.exe 2>&1 \| Out-String\)", b(c.quser_read)),
            (r"\$r\.klist = \(& klist\.exe sessions 2>&1 \| Out-String\)", b(c.klist_sessions_read)),
            (r"\$r\.'0x([0-9a-f]+)' = \(& klist\.exe -li 0x([0-9a-f]+) 2>&1 \| Out-String\)", b(c.klist_tickets_read)),
            (r"& klist\.exe purge -li 0x([0-9a-f]+) \| Out-Null", b(c.klist_purge)),
            (r"& logoff\.exe (\d+)", b(c.logoff)),
            ((rf"\$p = Join-Path \$env:TEMP '({_TEMPFILE})'; \$s = \[Text\.Encoding\]::UTF8\.GetString\(\[Convert\]::"
             r"FromBase64String\(\[IO\.File\]::ReadAllText\(\$p\)\)\); Remove-Item -LiteralPath \$p -Force; "
             r"& \(\[ScriptBlock\]::Create\(\$s\)\)"), self._run_chunked),
            *[(p, b(fn)) for p, fn in c.evidence_statements()],
            *[(p, b(fn)) for p, fn in session_statements()],
        ]

    # -- statement handlers -----------------------------------------------------------------------------------
    def _eap(self, run: _Run, m: re.Match[str]) -> None:
        run.eap = _lit(m.group(1))

    def _to_json(self, run: _Run, m: re.Match[str]) -> None:
        if self.host.ps_version.startswith("2"):
            # ConvertTo-Json arrived with PowerShell 3.0 (Windows 7 / 2008 R2 ship 2.0).
            raise PSError("The term 'ConvertTo-Json' is not recognized as the name of a cmdlet, function, script "
                          "file, or operable program.", command="ConvertTo-Json", category="ObjectNotFound",
                          error_id="CommandNotFoundException", terminating=True)
        run.out.append(json.dumps(run.r, separators=(",", ":")) + "\r\n")

    # -- state folder security (Get-Acl by SID; DirectorySecurity from SDDL) -----------------------------------
    def _get_acl(self, run: _Run, m: re.Match[str]) -> None:
        run.vars["a"] = run.vars["d"] if run.vars["d"].lower() in self.host.dirs else ""

    def _trusted(self, run: _Run, m: re.Match[str]) -> None:
        sec = self.host.security_of(run.vars["a"]) if run.vars.get("a") else None
        ok = sec is not None and sec.protected and sec.owner in (SYSTEM_SID, ADMINS_SID) and \
            set(sec.aces) <= {SYSTEM_SID, ADMINS_SID}
        run.vars["trusted"] = "1" if ok else ""

    def _move_untrusted(self, run: _Run, m: re.Match[str]) -> None:
        if run.vars.get("a") and not run.vars.get("trusted"):
            self.host.move_dir(run.vars["d"], f"{run.vars['d']}.untrusted-{dt.datetime.now().timestamp():.0f}")
            run.vars["a"] = ""

    def _create_protected_dir(self, run: _Run, m: re.Match[str]) -> None:
        if run.vars.get("a"):
            return
        sddl = m.group(1)
        parsed = re.fullmatch(r"O:(\w+)G:\w+D:(P?)AI?((?:\([^)]*\))*)", sddl)
        if parsed is None:
            raise PSError(f'Exception calling "SetSecurityDescriptorSddlForm" with "1" argument(s): "The SDDL '
                          f'form of a security descriptor object is invalid." ({sddl})', error_id="ArgumentException")
        aliases = {"SY": SYSTEM_SID, "BA": ADMINS_SID, "BU": USERS_SID}
        owner = aliases.get(parsed.group(1), parsed.group(1))
        aces = tuple(aliases.get(a.rsplit(";", 1)[1], a.rsplit(";", 1)[1])
                     for a in re.findall(r"\(([^)]*)\)", parsed.group(3)))
        self.host.ensure_dir(run.vars["d"], DirSecurity(owner, parsed.group(2) == "P", aces))
        run.vars["a"] = run.vars["d"]

    def _marker_exists(self, run: _Run, m: re.Match[str]) -> None:
        assert run.r is not None
        run.r["reverted_by_deadman"] = run.vars.get("trusted") == "1" and self.host.file_exists(_lit(m.group(1)))

    def _marker_read(self, run: _Run, m: re.Match[str]) -> None:
        assert run.r is not None
        if run.r.get("reverted_by_deadman"):
            run.r["reverted_at"] = self.host.read_file(_lit(m.group(1))).strip()

    def _saved_read(self, run: _Run, m: re.Match[str]) -> None:
        assert run.r is not None
        if run.vars.get("trusted") == "1" and self.host.file_exists(_lit(m.group(1))):
            run.r["saved"] = self.host.read_file(_lit(m.group(2)))

    def _write_b64(self, run: _Run, m: re.Match[str]) -> None:
        text = base64.b64decode(m.group(2)).decode("utf-8")
        if m.group(3):
            text = text.replace("@WHEN@", run.when)
        self._write(_lit(m.group(1)), text)

    def _xml_var(self, run: _Run, m: re.Match[str]) -> None:
        run.vars["xml"] = base64.b64decode(m.group(1)).decode("utf-8").replace("@WHEN@", run.when)

    def _write_now(self, run: _Run, m: re.Match[str]) -> None:
        self._write(_lit(m.group(1)), dt.datetime.now(dt.UTC).isoformat())

    def _write(self, path: str, text: str) -> None:
        try:
            self.host.write_file(path, text)
        except FileNotFoundError as exc:
            raise PSError(f'Exception calling "WriteAllText" with "2" argument(s): "{exc}"',
                          category="NotSpecified", error_id="DirectoryNotFoundException") from None

    def _when(self, run: _Run, m: re.Match[str]) -> None:
        run.when = (dt.datetime.now() + dt.timedelta(minutes=int(m.group(1)))).strftime("%Y-%m-%dT%H:%M:%S")

    def _throw_with_o(self, run: _Run, m: re.Match[str]) -> None:
        if run.last_exit != 0:
            msg = _lit(m.group(1)) + run.o.strip()
            raise PSError(msg, category="OperationStopped", error_id=msg, terminating=True)

    def _throw(self, run: _Run, m: re.Match[str]) -> None:
        if run.last_exit != 0:
            msg = _lit(m.group(1))
            raise PSError(msg, category="OperationStopped", error_id=msg, terminating=True)

    def _netsh_profiles(self, run: _Run, m: re.Match[str]) -> None:
        assert run.r is not None
        run.r["profiles_text"] = cmdlets.invoke_netsh(self, run, ["advfirewall", "show", "allprofiles"])

    def _netsh_rules(self, run: _Run, m: re.Match[str]) -> None:
        assert run.r is not None
        out, run.last_exit = run_netsh(self.host, ["advfirewall", "firewall", "show", "rule", "name=all", "verbose"])
        run.r["rules_text"] = out

    def _run_chunked(self, run: _Run, m: re.Match[str]) -> None:
        path = f"{self.host.user_temp(self.user)}\\{m.group(1)}"
        try:
            b64 = "".join(self.host.read_file(path).split())
        except FileNotFoundError as exc:
            raise PSError(f'Exception calling "ReadAllText" with "1" argument(s): "{exc}"',
                          error_id="FileNotFoundException") from None
        self.host.remove_file(path)
        script = base64.b64decode(b64).decode("utf-8")
        self.journal.append(script)
        inner = _Run(eap=run.eap, out=run.out, errors=run.errors)
        self._exec(script, inner)


class _Abort(Exception):
    def __init__(self, err: PSError, line_no: int, line: str) -> None:
        super().__init__(err.message)
        self.err = err
        self.line_no = line_no
        self.line = line
