"""The practice lab: real hosts in Linux network namespaces for rehearsal, the demo and integration tests.

``Lab(prefix).up()`` builds a switch, a LAN (mgmt, victim, peer, legacy behind the router/firewall fw) and an
outside attacker, each a network namespace with real sshd and TCP echo services; ``probe()`` returns the
reachability matrix that proves containment; ``down()`` leaves nothing behind. See docs in LAB.md.
"""

from __future__ import annotations

from agent.lab.errors import LabCommandError, LabError
from agent.lab.lab import Lab
from agent.lab.probe import DEFAULT_MATRIX, Check, LiveConnection, ProbeResult
from agent.lab.topology import LabHost

__all__ = [
           "DEFAULT_MATRIX",
           "Check",
           "Lab",
           "LabCommandError",
           "LabError",
           "LabHost",
           "LiveConnection",
           "ProbeResult",
]
