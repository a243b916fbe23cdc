"""Cut live flows after isolation: firewall rules alone freeze an attacker's open session, they do not end it.

LAB.md measured it: an SSH session stalled during isolation came back ≈2 s after release. So after the ruleset is
in place, every connected TCP/UDP socket that is not the management tuple (local port = SSH port, remote address
in the management set) and not loopback is destroyed with ``ss -K`` (the kernel aborts it; the process sees
ECONNABORTED), and tracked flows other than the management tuple are deleted with ``conntrack -D`` when the tool
exists. The filters are built from parsed addresses and an int port only, each token passed through
:func:`shlex.quote`.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Sequence
from typing import Any

from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.validation import Network

__all__ = ["MAX_FLOWS", "conntrack_delete_script", "cut_command", "finish_cut", "parse_conntrack", "ss_filter"]

MAX_FLOWS = 2000
# ``conntrack -L`` lines, or /proc/net/nf_conntrack's (the same after an "ipv4     2 " prefix)
_CT_LINE = re.compile(r"^(?:ipv[46]\s+\d+\s+)?(?P<proto>tcp|udp|icmp|icmpv6|sctp|udplite|dccp)\s+\d+\s+(?:\d+\s+)?"
                      r"(?:[A-Z_]+\s+)?"
                      r"src=(?P<src>\S+) dst=(?P<dst>\S+)(?: sport=(?P<sport>\d+) dport=(?P<dport>\d+))?")


def _ss_addr(net: Network) -> str:
    full = 32 if net.version == 4 else 128
    if net.version == 4:
        return str(net.network_address) if net.prefixlen == full else str(net)
    return f"[{net.network_address}]" if net.prefixlen == full else f"[{net}]"


def ss_filter(mgmt: Sequence[Network], port: int) -> list[str]:
    """``ss`` filter tokens: everything except the management tuple and loopback."""
    keep = " or ".join(f"dst {_ss_addr(n)}" for n in mgmt)
    expr = f"not ( ( sport = :{port} and ( {keep} ) ) or dst 127.0.0.0/8 or dst [::1] )"
    return expr.split(" ")


def cut_command(mgmt: Sequence[Network], port: int) -> str:
    """Destroy the non-management sockets (printing each), then list tracked flows if conntrack exists.

    The list comes from /proc/net/nf_conntrack where this login can read it (root; the file is the namespace's
    table, CONFIG_NF_CONNTRACK_PROCFS): ``conntrack -L`` dumps over netlink, and the kernel takes the lock of
    every bucket of the machine-wide hash table to do it — measured 9.5 ms of CPU with an empty table
    (262,144 buckets) against 1.0 ms for reading the file. Otherwise (sudo/doas, no procfs) ``conntrack -L``."""
    flt = " ".join(shlex.quote(t) for t in ss_filter(mgmt, port))
    sel = f"-H -n -t -u state connected exclude time-wait {flt}"
    # List first, without -p; destroy (with -p: which process held each socket, for the record) only when the
    # listing found a socket or failed. ``ss -p`` walks every process's file descriptors in /proc before it
    # prints anything — 17 ms of host CPU per isolation in the lab, most of it when nothing is left to cut.
    # Nothing new can join the set in between: the ruleset is already loaded, so no new non-management
    # connection can be established.
    return (f"echo '@@SS'; l=$(priv ss {sel} 2>&1); r=$?; if [ $r -ne 0 ] || [ -n \"$l\" ]; then "
            f"priv ss -K -p {sel} 2>&1; r=$?; fi; "
            "echo \"@@SS_RC $r\"; if command -v conntrack >/dev/null 2>&1; then echo '@@CT'; "
            "if [ -r /proc/net/nf_conntrack ]; then cat /proc/net/nf_conntrack 2>/dev/null || "
            "priv conntrack -L 2>/dev/null; else priv conntrack -L 2>/dev/null; fi; "
            "else echo '@@NO_CONNTRACK'; fi; true")


def _in(addr: str, nets: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in nets)


def parse_conntrack(text: str, mgmt: Sequence[Network], port: int) -> list[dict[str, Any]]:
    """Tracked flows that are *not* the management tuple (origin: mgmt → host:port over TCP), parsed safely."""
    flows: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = _CT_LINE.match(line.strip())
        if not m:
            continue
        try:
            src, dst = str(ipaddress.ip_address(m["src"])), str(ipaddress.ip_address(m["dst"]))
        except ValueError:
            continue
        sport = int(m["sport"]) if m["sport"] else None
        dport = int(m["dport"]) if m["dport"] else None
        if m["proto"] == "tcp" and dport == port and _in(src, mgmt):
            continue  # the agent's own SSH session
        if m["proto"] == "tcp" and sport == port and _in(dst, mgmt):
            continue
        if ipaddress.ip_address(src).is_loopback:
            continue
        flows.append({"proto": m["proto"], "src": src, "dst": dst, "sport": sport, "dport": dport})
    return flows[:MAX_FLOWS]


def conntrack_delete_script(flows: Sequence[dict[str, Any]]) -> str:
    """One ``conntrack -D`` per flow, values re-validated and quoted; prints how many were deleted."""
    lines = ["n=0"]
    for f in flows:
        argv = ["conntrack", "-D", "-p", f["proto"], "-s", str(ipaddress.ip_address(f["src"])),
                "-d", str(ipaddress.ip_address(f["dst"]))]
        if f.get("sport") is not None and f.get("dport") is not None:
            argv += ["--sport", str(int(f["sport"])), "--dport", str(int(f["dport"]))]
        lines.append("priv " + " ".join(shlex.quote(a) for a in argv) + " >/dev/null 2>&1 && n=$((n+1))")
    lines.append('echo "CT_DELETED=$n"')
    return "\n".join(lines) + "\n"


def finish_cut(session: SshSession, out: str, mgmt: Sequence[Network], port: int) -> dict[str, Any]:
    """Read the output of :func:`cut_command` (sent by isolation together with the read-back) and delete the
    tracked flows it listed: one more round trip, only when there are any. Returns what was cut (sockets as
    ``ss`` printed them, conntrack counts)."""
    head, _, rest = out.partition("@@SS_RC")
    sockets = [ln.strip() for ln in head.replace("@@SS", "", 1).splitlines() if ln.strip()]
    ss_rc = rest.split("\n", 1)[0].strip()
    result: dict[str, Any] = {"sockets_killed": sockets[:200], "sockets_killed_count": len(sockets),
                              "ss_status": int(ss_rc) if ss_rc.isdigit() else None}
    if "@@NO_CONNTRACK" in out:
        result["conntrack"] = "conntrack tool not installed: tracked flows not deleted"
        return result
    flows = parse_conntrack(out.partition("@@CT")[2], mgmt, port)
    result["conntrack_flows"] = [f"{f['proto']} {f['src']}:{f['sport'] or ''} -> {f['dst']}:{f['dport'] or ''}"
                                 for f in flows[:100]]
    if flows:
        # The script travels on stdin: ``sh -s`` reads it, so no command line grows with the flow count. That new
        # shell needs its own ``priv``.
        from connectors.ssh_linux.privilege import priv_definition
        _, ct_out, _ = session.run("sh -s", input=priv_definition(session.privilege) + "\n"
                                   + conntrack_delete_script(flows), timeout=20, what="conntrack -D")
        deleted = ct_out.rpartition("CT_DELETED=")[2].strip()
        result["conntrack_deleted"] = int(deleted) if deleted.isdigit() else 0
    else:
        result["conntrack_deleted"] = 0
    return result
