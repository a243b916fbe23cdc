"""The isolation rulesets (nft script, iptables-restore text) and the canonical summaries verify compares.

Why one module: the text that is applied and the rule list that verify expects to read back are generated from
the same inputs side by side, so they cannot drift apart. Only the management tuple passes, in both directions,
statelessly: there is deliberately no ``ct state established,related accept`` (LAB.md: it keeps an attacker's
already-open session alive). Inputs are parsed :mod:`ipaddress` networks and an ``int`` port, never raw text.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.ssh_linux.allowlist import Flow, iptables_rules, nft_rules
from connectors.ssh_linux.validation import Network

__all__ = [
    "CHAINS",
    "IPTABLES_CHECK_JUMPS",
    "IPTABLES_RELEASE",
    "IPT_CHAINS",
    "IPT_MARK",
    "ND_TYPES",
    "NFT_LOAD",
    "NFT_RELEASE",
    "OWNER_MARK",
    "PRIORITY",
    "TABLE",
    "TABLE_NAME",
    "iptables_expected",
    "iptables_restore",
    "ipv6_interfaces",
    "ipv6_set_script",
    "net_text",
    "nft_expected",
    "nft_script",
    "nft_summary",
]

# A name nobody else uses by accident, and an ownership mark inside it: a table of this name *without* the mark is
# someone else's and is refused, never replaced or deleted (issue 14 finding 4). nft 1.0.6 prints table comments
# in ``nft list`` but not in its JSON, so the mark is read from the text listing.
TABLE_NAME = "containment_agent"
TABLE = f"inet {TABLE_NAME}"
OWNER_MARK = "containment-agent: host isolation; lifted by agent release"
IPT_MARK = "containment-agent"  # every rule of our iptables chains carries ``-m comment --comment`` with this
CHAINS = ("input", "output", "forward")
PRIORITY = -10
# (builtin chain, our chain, direction): inbound matches source + dport, outbound destination + sport.
IPT_CHAINS = (("INPUT", "CAGENT_IN", "in"), ("OUTPUT", "CAGENT_OUT", "out"), ("FORWARD", "CAGENT_FWD", "fwd"))
ND_TYPES = ("nd-neighbor-solicit", "nd-neighbor-advert")


def net_text(net: Network) -> str:
    """``10.0.0.5`` for a single host, ``10.0.0.0/24`` for a network (how nft prints them back)."""
    full = 32 if net.version == 4 else 128
    return str(net.network_address) if net.prefixlen == full else str(net)


def _family(net: Network) -> str:
    return "ip" if net.version == 4 else "ip6"


def nft_expected(mgmt: Sequence[Network], port: int, allow: Sequence[Flow] = ()) -> dict[str, list[str]]:
    """Rules per chain in the canonical form :func:`nft_summary` renders from ``nft -j`` output; the allow-list's
    flows (:mod:`.allowlist`) follow the management rules."""
    has_v6 = any(n.version == 6 for n in mgmt)
    nd = [f"icmpv6 type {{{', '.join(ND_TYPES)}}} ip6 hoplimit 255 accept"] if has_v6 else []
    inp = ["iif lo accept"] + nd + [f"{_family(n)} saddr {net_text(n)} tcp dport {port} accept" for n in mgmt]
    out = ["oif lo accept"] + nd + [f"{_family(n)} daddr {net_text(n)} tcp sport {port} accept" for n in mgmt]
    kept = nft_rules(allow)
    return {"input": inp + kept["input"], "output": out + kept["output"], "forward": []}


def nft_script(mgmt: Sequence[Network], port: int, allow: Sequence[Flow] = ()) -> str:
    """One atomic ``nft -f -`` batch: create-if-missing, delete, then the whole table (nft 1.0.6 has no destroy)."""
    expected = nft_expected(mgmt, port, allow)
    lines = [f"table {TABLE}", f"delete table {TABLE}", f"table {TABLE} {{", f'\tcomment "{OWNER_MARK}"']
    for chain in CHAINS:
        lines.append(f"\tchain {chain} {{")
        lines.append(f"\t\ttype filter hook {chain} priority {PRIORITY}; policy drop;")
        for written in expected[chain]:
            rule = written.replace("iif lo", 'iif "lo"').replace("oif lo", 'oif "lo"')
            lines.append(f"\t\t{rule.replace('{', '{ ').replace('}', ' }')}")
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _value(v: Any) -> str:
    if isinstance(v, dict):
        if "prefix" in v:
            return f"{v['prefix']['addr']}/{v['prefix']['len']}"
        if "set" in v:
            return "{" + ", ".join(_value(x) for x in v["set"]) + "}"
        return json.dumps(v, sort_keys=True)
    return str(v)


def _expr(e: dict[str, Any]) -> str:
    if "match" in e:
        m = e["match"]
        left = m.get("left", {})
        if "meta" in left:
            lhs = left["meta"]["key"]
        elif "payload" in left:
            lhs = f"{left['payload'].get('protocol', '?')} {left['payload'].get('field', '?')}"
        else:
            lhs = json.dumps(left, sort_keys=True)
        op = "" if m.get("op") in ("==", "in") else f"{m.get('op')} "
        return f"{lhs} {op}{_value(m.get('right'))}"
    if len(e) == 1:
        (key, val), = e.items()
        return key if val is None else f"{key} {json.dumps(val, sort_keys=True)}"
    return json.dumps(e, sort_keys=True)


def nft_summary(listing: dict[str, Any]) -> dict[str, Any]:
    """Chains of our table from ``nft -j list table inet containment``: hook, policy, priority and rules."""
    chains: dict[str, Any] = {}
    for item in listing.get("nftables", []):
        if "chain" in item:
            c = item["chain"]
            chains[c["name"]] = {"hook": c.get("hook"), "policy": c.get("policy"), "prio": c.get("prio"),
                                 "type": c.get("type"), "rules": []}
    for item in listing.get("nftables", []):
        if "rule" in item:
            r = item["rule"]
            chains.setdefault(r["chain"], {"rules": []})["rules"].append(
                " ".join(_expr(e) for e in r.get("expr", []) if "counter" not in e))
    return chains


def iptables_expected(mgmt: Sequence[Network], port: int, version: int,
                      allow: Sequence[Flow] = ()) -> dict[str, list[str]]:
    """Our chains' rules exactly as ``iptables-save``/``iptables -S`` print them, per chain."""
    nets = [n for n in mgmt if n.version == version]
    m = f"-m comment --comment {IPT_MARK}"
    kept = iptables_rules(allow, version, m)
    return {
        "CAGENT_IN": [f"-A CAGENT_IN -i lo {m} -j ACCEPT"]
        + [f"-A CAGENT_IN -s {n} -p tcp -m tcp --dport {port} {m} -j ACCEPT" for n in nets]
        + kept["CAGENT_IN"] + [f"-A CAGENT_IN {m} -j DROP"],
        "CAGENT_OUT": [f"-A CAGENT_OUT -o lo {m} -j ACCEPT"]
        + [f"-A CAGENT_OUT -d {n} -p tcp -m tcp --sport {port} {m} -j ACCEPT" for n in nets]
        + kept["CAGENT_OUT"] + [f"-A CAGENT_OUT {m} -j DROP"],
        "CAGENT_FWD": [f"-A CAGENT_FWD {m} -j DROP"],
    }


def iptables_restore(mgmt: Sequence[Network], port: int, version: int,
                     missing_jumps: Sequence[str] = ("CAGENT_IN", "CAGENT_OUT", "CAGENT_FWD"),
                     allow: Sequence[Flow] = ()) -> str:
    """``iptables-restore --noflush`` text: (re)declare our chains (which flushes them), fill them, and insert
    the jumps at position 1 only for the chains in ``missing_jumps`` (``iptables -C`` said they are absent;
    re-running ``-I`` blindly duplicates jumps, LAB.md)."""
    expected = iptables_expected(mgmt, port, version, allow)
    out = ["*filter"] + [f":{chain} - [0:0]" for _, chain, _ in IPT_CHAINS]
    for _, chain, _ in IPT_CHAINS:
        out += expected[chain]
    out += [f"-I {builtin} 1 -j {chain}" for builtin, chain, _ in IPT_CHAINS if chain in missing_jumps]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


# Removes only our jumps (in a loop: a duplicated jump must not survive) and our chains, for both families.
# Static text: also the dead-man timer's revert on iptables hosts. Privileged commands go through ``priv``
# (:mod:`.privilege`).
IPTABLES_RELEASE = (
    "for t in iptables ip6tables; do command -v $t >/dev/null 2>&1 || continue; "
    "for p in INPUT:CAGENT_IN OUTPUT:CAGENT_OUT FORWARD:CAGENT_FWD; do b=${p%%:*}; c=${p#*:}; "
    "n=0; while priv $t -w -C $b -j $c 2>/dev/null && [ $n -lt 100 ]; do priv $t -w -D $b -j $c; n=$((n+1)); "
    "done; priv $t -w -F $c 2>/dev/null; priv $t -w -X $c 2>/dev/null; done; done; true")
NFT_RELEASE = f"priv nft delete table {TABLE}"
NFT_LOAD = "priv nft -f -"  # the ruleset (:func:`nft_script`) travels on stdin, never on a command line
# Checks which jumps exist (``iptables -C``) so the restore inserts only the missing ones.
IPTABLES_CHECK_JUMPS = (
    "for t in iptables ip6tables; do command -v $t >/dev/null 2>&1 || { echo \"$t absent\"; continue; }; "
    "for p in INPUT:CAGENT_IN OUTPUT:CAGENT_OUT FORWARD:CAGENT_FWD; do b=${p%%:*}; c=${p#*:}; "
    "if priv $t -w -C $b -j $c 2>/dev/null; then echo \"$t $c present\"; else echo \"$t $c missing\"; fi; "
    "done; done")

_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")


def ipv6_interfaces(sysctls: Mapping[str, str]) -> list[str]:
    """Interfaces whose IPv6 the fallback switches off: every one but ``lo`` (``::1`` stays), ``all`` (writing it
    would switch lo off too, ip-sysctl.txt) and names a shell or sysctl could misread; plus ``default`` so an
    interface created later starts without IPv6."""
    return [n for n in sorted(sysctls) if n not in ("lo", "all") and _IFNAME.fullmatch(n) and n not in (".", "..")]


def ipv6_set_script(names: Sequence[str], values: Mapping[str, str]) -> str:
    """``sysctl -qw net/ipv6/conf/<if>/disable_ipv6=<v>`` per interface. The slash form keeps dots in interface
    names (VLANs, ``eth0.100``) literal: sysctl(8) "the '/' separator is also accepted in place of a '.'"."""
    parts = []
    for name in names:
        value = values[name]
        if not _IFNAME.fullmatch(name) or value not in ("0", "1"):
            raise ValueError(f"refusing sysctl for interface {name!r} value {value!r}")
        parts.append(f"priv sysctl -qw {shlex.quote(f'net/ipv6/conf/{name}/disable_ipv6={value}')}")
    return "; ".join(parts) if parts else "true"
