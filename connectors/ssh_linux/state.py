"""Read a host's firewall state in one round trip and judge it against the expected isolation.

Why one static script: snapshot, idempotence check and verify all need the same facts (which tool, the whole
ruleset as text, our table/chains, where the agent's own session comes from, whether a dead-man timer is armed),
and every SSH round trip costs ≈45 ms. The script has no interpolated values; its sections are parsed here.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.errors import Rejected
from connectors.ssh_linux import deadman, persist, rules
from connectors.ssh_linux.hostfuncs import READ_STATE, STATE_SCRIPT
from connectors.ssh_linux.session import SshSession
from connectors.ssh_linux.allowlist import Flow
from connectors.ssh_linux.validation import Network

__all__ = [
    "STATE_SCRIPT",
    "FirewallState",
    "empty_tables_added",
    "judge",
    "nft_table_is_ours",
    "normalise",
    "parse_state",
    "read_state",
    "ruleset_diff",
    "run_then_read",
    "split_then_read",
    "then_read_script",
]

@dataclass
class FirewallState:
    """What :data:`STATE_SCRIPT` found on the host."""

    tool: str
    ruleset: str
    ruleset6: str = ""
    has_ip6tables: bool = True
    nft_table: dict[str, Any] | None = None            # nft: our table's chains (rules.nft_summary) or None
    ipt_chains: dict[int, dict[str, list[str]]] = field(default_factory=dict)  # version -> chain -> -A lines
    ipt_jumps: dict[int, dict[str, list[int]]] = field(default_factory=dict)   # version -> chain -> positions
    agent_source: str = ""
    agent_server_port: int | None = None
    agent_server_address: str = ""  # the host's address the agent's session reached (SSH_CONNECTION field 3)
    timer: deadman.TimerRecord | None = None            # a live dead-man timer (any run's)
    deadman_reverted_at: str = ""
    foreign: list[str] = field(default_factory=list)   # our table/chain names held by something that is not ours
    ipv6_sysctls: dict[str, str] = field(default_factory=dict)  # iptables without ip6tables: if -> disable_ipv6
    failed: str = ""
    persist: persist.PersistState = field(default_factory=lambda: persist.PersistState(False, {}, ()))
    managers: dict[str, str] = field(default_factory=dict)  # "firewalld" -> backend, "ufw" -> MANAGE_BUILTINS

    @property
    def deadman_pid(self) -> int | None:
        return self.timer.pid if self.timer else None

    @property
    def ipv6_open(self) -> list[str]:
        """iptables hosts without ip6tables: interfaces that still pass IPv6 (empty when IPv6 is absent)."""
        if self.tool == "nft" or self.has_ip6tables:
            return []
        return [n for n in rules.ipv6_interfaces(self.ipv6_sysctls) if self.ipv6_sysctls[n] != "1"]

    @property
    def present(self) -> bool:
        """Any trace of our isolation (table, chain or jump) is on the host."""
        if self.tool == "nft":
            return self.nft_table is not None and not self.foreign
        if self.foreign:
            return False
        return any(self.ipt_chains.get(v) or any(self.ipt_jumps.get(v, {}).values()) for v in (4, 6))


def _sections(out: str) -> dict[str, str]:
    parts: dict[str, list[str]] = {}
    current = "_"
    for line in out.splitlines():
        if line.startswith("@@"):
            name, _, rest = line[2:].partition(" ")
            current = name
            parts.setdefault(current, [])
            if rest:
                parts[current].append(rest)
            continue
        parts.setdefault(current, []).append(line)
    return {k: "\n".join(v) + ("\n" if v else "") for k, v in parts.items()}


def _parse_save(text: str) -> tuple[dict[str, list[str]], dict[str, list[int]]]:
    """Our chains' ``-A`` lines and the positions of jumps into them in the builtin chains (filter table)."""
    chains: dict[str, list[str]] = {}
    jumps: dict[str, list[int]] = {c: [] for _, c, _ in rules.IPT_CHAINS}
    table = ""
    position: dict[str, int] = {}
    ours = {c for _, c, _ in rules.IPT_CHAINS}
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table != "filter":
            continue
        if line.startswith(":") and line[1:].split(" ", 1)[0] in ours:
            chains.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("-A "):
            chain = line.split()[1]
            position[chain] = position.get(chain, 0) + 1
            if chain in ours:
                chains.setdefault(chain, []).append(line)
            m = re.fullmatch(r"-A (INPUT|OUTPUT|FORWARD) -j (CAGENT_IN|CAGENT_OUT|CAGENT_FWD)", line)
            if m:
                jumps[m.group(2)].append(position[chain])
    return chains, jumps


def parse_state(out: str) -> FirewallState:
    sec = _sections(out)
    fields = {line.split("=", 1)[0]: line.split("=", 1)[1] for line in sec.get("_", "").splitlines()
              if "=" in line}
    ssh = sec.get("SSH", "").split()
    state = FirewallState(tool=sec.get("TOOL", "").strip() or "unknown", ruleset=sec.get("RULESET", ""),
                          failed=sec.get("FAILED", "").strip())
    if len(ssh) == 4:
        state.agent_source = ssh[0]
        state.agent_server_address = ssh[2]
        state.agent_server_port = int(ssh[3]) if ssh[3].isdigit() else None
    state.timer = deadman.parse_status(sec.get("_", ""))
    state.persist = persist.parse_section(sec.get("PERSIST", ""))
    for line in sec.get("FWMGR", "").splitlines():
        name, _, value = line.strip().partition(" ")
        if name in ("firewalld", "ufw"):
            state.managers[name] = value.strip().strip('"').lower()
    state.deadman_reverted_at = fields.get("DEADMAN_REVERTED", "").strip().split(" ")[0]
    if state.tool == "nft":
        table = sec.get("TABLE", "").strip()
        if table:
            try:
                state.nft_table = rules.nft_summary(json.loads(table))
            except (ValueError, KeyError, TypeError):
                state.nft_table = {"unparsable": table[:200]}
            if not nft_table_is_ours(state.ruleset):
                state.foreign.append(f"nft table {rules.TABLE}")
    else:
        state.ruleset6 = sec.get("RULESET6", "")
        state.has_ip6tables = "NO_IP6TABLES" not in sec
        for version, text in ((4, state.ruleset), (6, state.ruleset6)):
            state.ipt_chains[version], state.ipt_jumps[version] = _parse_save(text)
            tool = "iptables" if version == 4 else "ip6tables"
            for chain, lines in state.ipt_chains[version].items():
                if not lines or any(f"--comment {rules.IPT_MARK} " not in f"{ln} " for ln in lines):
                    state.foreign.append(f"{tool} chain {chain}")
        for line in sec.get("IPV6", "").splitlines():
            name, _, value = line.strip().partition(" ")
            if name:
                state.ipv6_sysctls[name] = value.strip()
    return state


def nft_table_is_ours(ruleset: str) -> bool:
    """Our table (by name) in ``nft list ruleset`` text carries :data:`rules.OWNER_MARK` as its comment."""
    lines = ruleset.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"table {rules.TABLE} {{":
            return i + 1 < len(lines) and lines[i + 1].strip() == f'comment "{rules.OWNER_MARK}"'
    return False


_STATE_MARK = "@@@STATE"  # separates the state sections from the output of commands run before them


def read_state(session: SshSession, *, reuse_within: float = 0.0) -> FirewallState:
    """Read the state (one round trip), or reuse the last read of this session when ``reuse_within`` allows."""
    if reuse_within > 0:
        cached = session.recall(reuse_within)
        if isinstance(cached, FirewallState):
            return cached
    _, out, _ = session.run(READ_STATE, timeout=min(session.ctx.command_timeout, 20), check=True,
                            what="read firewall state")
    return _checked_state(session, out)


def then_read_script(commands: str) -> str:
    """``commands`` followed by the state read (:data:`STATE_SCRIPT`, called as the prelude's ``ca_state``), as
    one command text (what :func:`run_then_read` sends)."""
    return f"{commands}; echo '{_STATE_MARK}'; {READ_STATE}"


def split_then_read(out: str) -> tuple[str, str]:
    """(output of the commands, state sections) of what :func:`then_read_script` printed."""
    head, mark, tail = out.partition(f"\n{_STATE_MARK}\n")
    if not mark and out.startswith(f"{_STATE_MARK}\n"):
        head, tail = "", out[len(_STATE_MARK) + 1:]
    return head, tail


def run_then_read(session: SshSession, commands: str, *, what: str,
                  timeout: float = 20) -> tuple[str, FirewallState]:
    """Run ``commands`` and read the state back in the same round trip; return (their output, the state)."""
    _, out, _ = session.run(then_read_script(commands), timeout=timeout, check=True, what=what)
    head, tail = split_then_read(out)
    return head, _checked_state(session, tail)


def _checked_state(session: SshSession, out: str) -> FirewallState:
    """Parse state output; a failed listing raises. The result is remembered on the session."""
    state = parse_state(out)
    if state.failed:
        raise Rejected(f"reading the firewall state on {session.target.address} failed ({state.failed}): "
                       f"{state.ruleset.strip()[-300:]}", target=session.label)
    session.remember(state)
    return state


def judge(state: FirewallState, mgmt: Sequence[Network], port: int, allow: Sequence[Flow] = ()) -> list[str]:
    """Differences between the host and the expected isolation; empty means fully in effect."""
    problems: list[str] = []
    if state.foreign:
        return [f"{name} exists but is not the agent's (no ownership mark)" for name in state.foreign]
    if state.tool == "nft":
        if state.nft_table is None:
            return [f"table {rules.TABLE} absent"]
        expected = rules.nft_expected(mgmt, port, allow)
        for chain in rules.CHAINS:
            got = state.nft_table.get(chain)
            if got is None:
                problems.append(f"chain {chain} missing")
                continue
            if got.get("hook") != chain or got.get("policy") != "drop":
                problems.append(f"chain {chain}: hook {got.get('hook')} policy {got.get('policy')}")
            if got.get("rules") != expected[chain]:
                problems.append(f"chain {chain}: rules {got.get('rules')} != expected {expected[chain]}")
        extra = set(state.nft_table) - set(rules.CHAINS)
        if extra:
            problems.append(f"unexpected chains {sorted(extra)}")
        return problems
    versions = (4, 6) if state.has_ip6tables else (4,)
    for version in versions:
        tool = "iptables" if version == 4 else "ip6tables"
        expected = rules.iptables_expected(mgmt, port, version, allow)
        chains = state.ipt_chains.get(version, {})
        jumps = state.ipt_jumps.get(version, {})
        for builtin, chain, _ in rules.IPT_CHAINS:
            if chains.get(chain) != expected[chain]:
                problems.append(f"{tool} {chain}: {chains.get(chain)} != expected {expected[chain]}")
            if jumps.get(chain) != [1]:
                problems.append(f"{tool} {builtin}: jump to {chain} at positions {jumps.get(chain)} (expected [1])")
    problems += [f"IPv6 still enabled on {name} (no ip6tables: IPv6 is blocked by disable_ipv6)"
                 for name in state.ipv6_open]
    return problems


_NFT_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
_IPT_COUNTS = re.compile(r"\[\d+:\d+\]")


def normalise(ruleset: str, *, keep_empty_tables: bool = False) -> str:
    """Ruleset text without what changes by itself: packet counters, ``#`` comment lines of iptables-save, and
    (unless ``keep_empty_tables``) iptables tables holding no rules and only ACCEPT policies (iptables-nft creates
    those on first use; an absent table and such an empty one filter the same, but they are not the same ruleset:
    release reports them, see :func:`empty_tables_added`)."""
    out: list[str] = []
    block: list[str] = []
    for raw in ruleset.splitlines():
        if raw.startswith("#"):
            continue
        line = _IPT_COUNTS.sub("[0:0]", _NFT_COUNTER.sub("counter", raw)).rstrip()
        if line.startswith("*"):
            block = [line]
            continue
        if block:
            block.append(line)
            if line == "COMMIT":
                body = block[1:-1]
                inert = all(b.startswith(":") and b.split()[1] in ("ACCEPT", "-") for b in body)
                if keep_empty_tables or not inert:
                    out.extend(block)
                block = []
            continue
        out.append(line)
    return "\n".join(out).strip()


def empty_tables_added(before: str, after: str) -> list[str]:
    """iptables tables (``*filter``...) that are in ``after`` but not in ``before`` and hold nothing: what
    iptables-nft leaves behind on first use and no iptables command can delete (only ``nft delete table``)."""
    def tables(text: str) -> set[str]:
        return {ln[1:].strip() for ln in normalise(text, keep_empty_tables=True).splitlines() if ln.startswith("*")}
    kept = {ln[1:].strip() for ln in normalise(after).splitlines() if ln.startswith("*")}
    return sorted(tables(after) - tables(before) - kept)


def ruleset_diff(before: str, after: str, limit: int = 40) -> list[str]:
    """Unified diff lines (normalised) between two rulesets, at most ``limit`` lines."""
    diff = difflib.unified_diff(normalise(before).splitlines(), normalise(after).splitlines(),
                                "snapshot", "now", lineterm="", n=1)
    return list(diff)[:limit]
