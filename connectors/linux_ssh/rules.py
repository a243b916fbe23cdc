"""The isolation rulesets (nftables and the iptables fallback) and the scripts around them.

Only management addresses parsed by :mod:`ipaddress` and integer ports are ever interpolated; rulesets travel on
stdin, never on a command line. There is deliberately no ``ct state established,related accept``: that would keep
an attacker's open session alive (CONNECTORS.md). Established traffic is allowed only for the management tuple,
and the stateless rules below already cover it.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence

from connectors.errors import InvalidInput

__all__ = [
    "CHAINS",
    "DEADMAN_PIDFILE",
    "REVERTED_MARK",
    "TABLE",
    "cut_flows",
    "deadman_arm",
    "deadman_cancel",
    "iptables_jumps",
    "iptables_release",
    "iptables_rules",
    "management",
    "nft_release",
    "nft_ruleset",
    "normalise",
]

TABLE = "inet containment"
CHAINS = ("CONTAIN_IN", "CONTAIN_OUT", "CONTAIN_FWD")
DEADMAN_PIDFILE = "/run/ir-containment-deadman.pid"
REVERTED_MARK = "/run/ir-containment-reverted"
_JUMPS = (("INPUT", "CONTAIN_IN"), ("OUTPUT", "CONTAIN_OUT"), ("FORWARD", "CONTAIN_FWD"))

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def management(values: Sequence[object], port: object) -> tuple[list[Address], int]:
    """Parse the management addresses and SSH port; anything else is refused before connecting."""
    if not values:
        raise InvalidInput("management: no management address configured; isolation would cut the agent off")
    addrs: list[Address] = []
    for value in values:
        if not isinstance(value, str) or not re.fullmatch(r"[0-9A-Fa-f:.]{2,45}", value):
            raise InvalidInput(f"management: {value!r} is not an IP address")
        try:
            addrs.append(ipaddress.ip_address(value))
        except ValueError:
            raise InvalidInput(f"management: {value!r} is not an IP address") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"ssh_port: {port!r} is not a TCP port")
    return addrs, port


def nft_ruleset(addrs: Sequence[Address], port: int) -> str:
    """One atomic transaction: create-if-missing, delete, recreate (nft 1.0.6 has no ``destroy``)."""
    inbound, outbound = [], []
    for a in addrs:
        fam = "ip" if a.version == 4 else "ip6"
        inbound.append(f"    {fam} saddr {a} tcp dport {port} accept")
        outbound.append(f"    {fam} daddr {a} tcp sport {port} accept")
    return "\n".join([
        f"table {TABLE}",
        f"delete table {TABLE}",
        f"table {TABLE} {{",
        "  chain input {",
        "    type filter hook input priority -10; policy drop;",
        '    iif "lo" accept',
        *inbound,
        "  }",
        "  chain output {",
        "    type filter hook output priority -10; policy drop;",
        '    oif "lo" accept',
        *outbound,
        "  }",
        "  chain forward {",
        "    type filter hook forward priority -10; policy drop;",
        "  }",
        "}",
        "",
    ])


def iptables_rules(addrs: Sequence[Address], port: int, version: int) -> str:
    """``iptables-restore --noflush`` input: dedicated chains; jumps are inserted separately after ``-C``."""
    lines = ["*filter", *(f":{c} - [0:0]" for c in CHAINS),
             "-A CONTAIN_IN -i lo -j ACCEPT", "-A CONTAIN_OUT -o lo -j ACCEPT"]
    bits = 32 if version == 4 else 128
    for a in addrs:
        if a.version != version:
            continue
        lines.append(f"-A CONTAIN_IN -s {a}/{bits} -p tcp -m tcp --dport {port} -j ACCEPT")
        lines.append(f"-A CONTAIN_OUT -d {a}/{bits} -p tcp -m tcp --sport {port} -j ACCEPT")
    lines += ["-A CONTAIN_IN -j DROP", "-A CONTAIN_OUT -j DROP", "-A CONTAIN_FWD -j DROP", "COMMIT", ""]
    return "\n".join(lines)


def iptables_jumps(tool: str) -> str:
    """Insert each jump at position 1 unless it is already there (re-running must not duplicate it)."""
    return "; ".join(f"{tool} -C {chain} -j {target} 2>/dev/null || {tool} -I {chain} 1 -j {target}"
                     for chain, target in _JUMPS)


def nft_release() -> str:
    return f"nft list table {TABLE} >/dev/null 2>&1 && nft delete table {TABLE}; true"


def iptables_release() -> str:
    parts = []
    for tool in ("iptables", "ip6tables"):
        for chain, target in _JUMPS:
            parts.append(f"while {tool} -D {chain} -j {target} 2>/dev/null; do :; done")
        for chain in CHAINS:
            parts.append(f"{tool} -F {chain} 2>/dev/null; {tool} -X {chain} 2>/dev/null")
    return "; ".join(parts) + "; true"


def deadman_arm(seconds: int, revert: str) -> str:
    """Start a detached timer that reverts isolation unless cancelled (confirm-or-revert)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not 5 <= seconds <= 86400:
        raise InvalidInput(f"confirm_seconds: {seconds!r} must be an integer between 5 and 86400")
    body = f"sleep {seconds}; {revert}; date -u +%FT%TZ > {REVERTED_MARK}; rm -f {DEADMAN_PIDFILE}"
    return (f"{deadman_cancel()}; rm -f {REVERTED_MARK}; "
            f"setsid sh -c {shlex.quote(body)} </dev/null >/dev/null 2>&1 & echo $! > {DEADMAN_PIDFILE}")


def deadman_cancel() -> str:
    return (f"if [ -f {DEADMAN_PIDFILE} ]; then kill -- -$(cat {DEADMAN_PIDFILE}) 2>/dev/null; "
            f"rm -f {DEADMAN_PIDFILE}; fi")


def cut_flows(addrs: Sequence[Address], port: int) -> str:
    """Kill established TCP sockets except the management tuple, and forget tracked flows."""
    keep = " or ".join(f"dst {a}" if a.version == 4 else f"dst [{a}]" for a in addrs)
    flt = f"! ( sport = :{port} and ( {keep} ) )"
    return (f"n=$(ss -Htn state established {shlex.quote(flt)} | wc -l); "
            f"ss -K -tn state established {shlex.quote(flt)} >/dev/null 2>&1; "
            "command -v conntrack >/dev/null 2>&1 && conntrack -F >/dev/null 2>&1; "
            'echo "CUT=$n"')


_COUNTERS = re.compile(r"counter packets \d+ bytes \d+")
_IPT_COUNTS = re.compile(r"\[\d+:\d+\]")


def normalise(ruleset: str) -> str:
    """Drop what changes by itself before comparing rulesets: packet counters, iptables-save comments, and
    iptables tables that hold no rules and only ACCEPT policies (iptables-nft creates those on first use; they
    filter nothing, so an absent table and an empty one are the same state)."""
    out: list[str] = []
    block: list[str] = []
    for raw in ruleset.splitlines():
        if raw.startswith("#"):
            continue
        line = _IPT_COUNTS.sub("[0:0]", _COUNTERS.sub("counter", raw)).rstrip()
        if line.startswith("*"):
            block = [line]
            continue
        if block:
            block.append(line)
            if line == "COMMIT":
                body = block[1:-1]
                inert = all(b.startswith(":") and b.split()[1] in ("ACCEPT", "-") for b in body)
                if not inert:
                    out.extend(block)
                block = []
            continue
        out.append(line)
    return "\n".join(out).strip()
