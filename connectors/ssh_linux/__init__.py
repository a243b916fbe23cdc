"""Linux hosts over SSH (paramiko): isolation with nftables (iptables/ip6tables fallback), evidence, sessions.

``SshLinuxConnector`` is registered as the ``ssh_linux`` entry point. Importing this package is cheap: paramiko
is imported only when a connection is opened.
"""

from __future__ import annotations

from connectors.ssh_linux.connector import SshLinuxConnector
from connectors.ssh_linux.session import SshSession, open_session

__all__ = ["SshLinuxConnector", "SshSession", "open_session"]
