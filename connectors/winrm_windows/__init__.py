"""Windows hosts over WinRM: firewall isolation with a dead-man switch, session kill, evidence capture.

Only :class:`WinRMWindowsConnector` is public; pywinrm is imported when a session opens, not on import.
"""

from __future__ import annotations

from connectors.winrm_windows.connector import WinRMWindowsConnector

__all__ = ["WinRMWindowsConnector"]
