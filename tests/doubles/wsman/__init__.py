"""A WS-Management (WinRM) protocol double with a simulated Windows host behind it.

Real TCP on 127.0.0.1, HTTP or HTTPS (test CA), Basic and NTLM auth (NTLM sealing over HTTP), the shell resource
(Create, Command, Send, Receive, Signal, Delete) and a recognizer for the PowerShell/cmd statements the
winrm_windows connector sends, acting on :class:`WindowsHost` state that tests assert on.
"""

from __future__ import annotations

from tests.doubles.wsman.auth import write_ntlm_user_file
from tests.doubles.wsman.host import (
    DirSecurity,
    LogonSession,
    Process,
    Profile,
    Rule,
    SmbSession,
    UserSession,
    WindowsHost,
)
from tests.doubles.wsman.pki import ServerCert, TestCA
from tests.doubles.wsman.server import InjectedFault, JournalEntry, WSManDouble

__all__ = [
    "DirSecurity",
    "InjectedFault",
    "JournalEntry",
    "LogonSession",
    "Process",
    "Profile",
    "Rule",
    "ServerCert",
    "SmbSession",
    "TestCA",
    "UserSession",
    "WSManDouble",
    "WindowsHost",
    "write_ntlm_user_file",
]
