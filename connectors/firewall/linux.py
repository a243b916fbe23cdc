"""Linux router with nftables: interval sets ``v4``/``v6`` in ``table inet ir_block``, dropped in ``input``
(source) and ``forward`` (source and destination, so call-backs to the address die too).

Why this shape: netmiko's ``linux`` driver runs an interactive shell and reports no exit status, so every command
ends in ``; echo __RC=$?`` and the number is parsed. Lines stay under the driver's 511-column terminal (the shell
would wrap longer echoes), so elements are sent in chunks of a few hundred characters. LAB.md facts: deleting a
missing element fails and adding one inside an existing interval fails ("interval overlaps"), so membership is read
first (``nft -j``) and a request that would *contain* an existing entry is refused with a clear message instead of
a device error. The scaffold is repaired in place (``add`` of table/sets/chains is idempotent, each chain's rules
are flushed and re-added in one nft transaction), never by deleting the table — that would drop the members.
Persistence is optional: ``options.persist_file`` receives ``nft list table inet ir_block`` after each change.

Established flows: the drop rules carry no "established" exception, so every later packet of a flow dies; the
router's connection-tracking entries of the blocked addresses (NAT state, the flow a conntrack-based rule would
still accept) are deleted after the block is in effect with ``conntrack -D -s A`` and ``conntrack -D -d A``
(conntrack(8): ``-s``/``-d`` match the original source/destination, a CIDR is accepted; "N flow entries have
been deleted" on stderr, exit status 1 when none matched) and read back with ``conntrack -L``. A router without
the conntrack tool gets a warning saying the entries were not cleared, never a silent success.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from connectors.errors import InvalidInput, Rejected
from connectors.firewall.addresses import Network, to_text
from connectors.firewall.dialect import Dialect
from connectors.firewall.model import DeviceError, DeviceState, Step

__all__ = ["TABLE", "LinuxNft"]

TABLE = "ir_block"
_RC = re.compile(r"__RC=(\d+)")
_DELETED = re.compile(r"(\d+) flow entries have been deleted")
_SHOWN = re.compile(r"(\d+) flow entries have been shown")
_CT_BUDGET = 150   # characters of addresses per conntrack loop line (the line stays inside the terminal)
_PATH_RE = re.compile(r"\A/(?:[A-Za-z0-9_.-]+/)*[A-Za-z0-9_.-]+\Z", re.ASCII)
_LINE_BUDGET = 360
_INPUT_RULES = ("ip saddr @v4 drop", "ip6 saddr @v6 drop")
_FORWARD_RULES = ("ip saddr @v4 drop", "ip6 saddr @v6 drop", "ip daddr @v4 drop", "ip6 daddr @v6 drop")


def _elements(value: Any) -> list[Network]:
    out: list[Network] = []
    for item in value or []:
        if isinstance(item, str):
            out.append(ipaddress.ip_network(item))
        elif isinstance(item, dict) and "prefix" in item:
            out.append(ipaddress.ip_network(f"{item['prefix']['addr']}/{item['prefix']['len']}"))
        elif isinstance(item, dict) and "range" in item:
            lo, hi = (ipaddress.ip_address(x) for x in item["range"])
            out.extend(ipaddress.summarize_address_range(lo, hi))
        elif isinstance(item, dict) and "elem" in item:
            out.extend(_elements([item["elem"]["val"]]))
    return out


def _rule_text(expr: list[dict[str, Any]]) -> str:
    """Render the few rule shapes we create back into nft syntax, to compare with what we expect."""
    parts: list[str] = []
    for e in expr:
        if "match" in e:
            left = e["match"]["left"].get("payload", {})
            parts.append(f"{left.get('protocol')} {left.get('field')} {e['match']['right']}")
        elif "drop" in e:
            parts.append("drop")
        else:
            parts.append("?")
    return " ".join(parts)


class LinuxNft(Dialect):
    """Linux + nftables (netmiko ``linux``)."""

    device_type = "linux"
    error_re = re.compile(r"__RC=[1-9]\d*")
    uses_config_mode = False
    blocks_outbound = True   # the forward chain drops daddr too
    pipeline = 1   # bash echoes typed-ahead input into running commands' output
    config_prompt = r"[#$]\s*$"

    @classmethod
    def validate_options(cls, options: Mapping[str, Any]) -> None:
        path = options.get("persist_file")
        if path is not None and (not isinstance(path, str) or not _PATH_RE.match(path) or "/../" in f"{path}/"):
            raise InvalidInput(f"options.persist_file: {path!r} is not a plain absolute path",
                               detail={"field": "options.persist_file"})

    def _cmd(self, text: str) -> str:
        return ("sudo -n " if self.options.get("sudo") else "") + text

    def _run(self, text: str) -> tuple[int, str]:
        out = self._show(f"{self._cmd(text)} 2>&1; echo __RC=$?")
        m = _RC.search(out)
        return (int(m.group(1)) if m else -1), _RC.sub("", out).strip()

    def _read_state(self) -> DeviceState:
        rc, out = self._run(f"nft -j list table inet {TABLE}")
        if rc != 0:
            return DeviceState(facts={"table": False})
        data = json.loads(out[out.index("{"):]) if "{" in out else {"nftables": []}
        sets: dict[str, list[Network]] = {}
        rules: dict[str, list[str]] = {"input": [], "forward": []}
        for obj in data.get("nftables", []):
            if "set" in obj:
                sets[obj["set"]["name"]] = _elements(obj["set"].get("elem"))
            elif "rule" in obj and obj["rule"].get("chain") in rules:
                rules[obj["rule"]["chain"]].append(_rule_text(obj["rule"].get("expr", [])))
        ok = list(_INPUT_RULES) == rules["input"] and list(_FORWARD_RULES) == rules["forward"]
        return DeviceState(members=sets.get("v4", []) + sets.get("v6", []),
                           group_exists={"v4", "v6"} <= set(sets), rule_in_place=ok, facts={"table": True})

    # ----- established flows (conntrack) ------------------------------------------------------------------------
    # Why not one ``conntrack -D`` per address: each call dumps the kernel table over netlink (~10-20 ms), so 200
    # addresses cost seconds. The table's addresses are listed once into a shell variable; an address runs
    # ``conntrack -D -s/-d`` only when it appears there (a prefix always does). The read-back is one dump,
    # aggregated on the router to (original source, original destination, count) and matched here.
    def _session_lines_for(self, nets: Sequence[Network]) -> list[str]:
        if not nets:
            return []
        tool = self._cmd("conntrack")
        seen = (f"ct_seen=\" $({tool} -L 2>/dev/null | grep -oE '(src|dst)=[^ ]+' | cut -d= -f2 | sort -u | "
                "tr '\\n' ' ') \"")
        lines = [f'{seen}; {tool} -C >/dev/null 2>&1 && echo "@@table ok"']
        batch: list[str] = []
        texts = [shlex.quote(to_text(n)) for n in nets]
        for i, text in enumerate(texts):
            batch.append(text)
            if len(" ".join(batch)) > _CT_BUDGET or i == len(texts) - 1:
                lines.append(f'for a in {" ".join(batch)}; do echo "@@ $a"; case "$a$ct_seen" in */*|*" $a "*) '
                             f'for f in -s -d; do {tool} -D $f "$a" 2>&1 >/dev/null; echo "rc=$?"; done;; '
                             '*) echo "rc=none";; esac; done')
                batch = []
        return lines

    def _session_lines(self, net: Network) -> list[str]:
        return self._session_lines_for([net])

    def _loop(self, line: str) -> tuple[dict[str, int], list[str]]:
        """Run one loop line: ``({address: entries deleted}, [addresses whose conntrack failed])``."""
        out = self._show(f"{line} 2>&1; echo __RC=$?")
        counts: dict[str, int] = {}
        failed: dict[str, str] = {}
        current = ""
        for raw in out.splitlines():
            text = raw.strip()
            if text.startswith("@@ "):
                current = text[3:]
                counts.setdefault(current, 0)
            elif not current or not text or text.startswith("__RC=") or text == "rc=none":
                continue
            elif m := _DELETED.search(text):
                counts[current] += int(m.group(1))
            elif text.startswith("rc="):
                if text[3:] not in ("0", "1"):
                    failed.setdefault(current, f"exit status {text[3:]}")
            else:
                failed.setdefault(current, text[:200])
        return counts, [f"{a} ({why})" for a, why in failed.items()]

    def clear_sessions(self, nets: Sequence[Network]) -> tuple[list[str], list[str]]:
        """Delete each address's entries, both directions, and count them; anything but "N deleted" (the tool
        missing, no privilege) stops with a warning, so "cleared" is never claimed unchecked."""
        sent: list[str] = []
        self.cleared = {}
        lines = self._session_lines_for(nets)
        if not lines:
            return sent, []
        table = self._guard(self._show, f"{lines[0]} 2>&1; echo __RC=$?")
        if "@@table ok" not in table:
            return sent, [("connection-tracking entries NOT cleared: the router's conntrack table could not be "
                           f"read ({' '.join(_RC.sub('', table).split())[:160] or 'no answer'}); install conntrack "
                           "(conntrack-tools) on the router, or they expire by themselves")]
        sent.append(lines[0])
        for line in lines[1:]:
            counts, failed = self._guard(self._loop, line)
            if failed or not counts:
                return sent, [(f"connection-tracking entries NOT cleared: {'; '.join(failed[:3]) or line[:80]}; "
                               "they expire by themselves or are deleted by hand (conntrack -D)")]
            sent.append(line)
            self.cleared.update(counts)
        return sent, []

    def sessions_left(self, nets: Sequence[Network]) -> dict[str, int]:
        """Entries still tracked per address, from one aggregated dump; {} when the table cannot be read (verify
        then says nothing about flows)."""
        if not nets:
            return {}
        tool = self._cmd("conntrack")
        out = self._guard(self._show, f"{tool} -C >/dev/null 2>&1 && echo @@table-ok; {tool} -L 2>/dev/null | awk "
                          "'{for(i=1;i<=NF;i++) if($i ~ /^src=/){print substr($i,5), substr($(i+1),5); break}}' "
                          "| sort | uniq -c; echo __RC=$?")
        if "@@table-ok" not in out:
            return {}
        pairs: list[tuple[int, Any, Any]] = []
        for m in re.finditer(r"(?m)^\s*(\d+) ([0-9A-Fa-f:.]+) ([0-9A-Fa-f:.]+)\s*$", out):
            try:
                pairs.append((int(m.group(1)), ipaddress.ip_address(m.group(2)), ipaddress.ip_address(m.group(3))))
            except ValueError:
                continue
        return {to_text(net): sum(n for n, src, dst in pairs if src in net or dst in net) for net in nets}

    def _sessions_left(self, net: Network) -> int | None:
        return self.sessions_left([net]).get(to_text(net))

    def _own_addresses(self) -> list[str] | None:
        rc, out = self._run("ip -o addr show")
        return re.findall(r"\binet6?\s+([0-9A-Fa-f:.]+)/\d+", out) if rc == 0 else None

    def _check_conflicts(self, todo: list[Network], state: DeviceState) -> None:
        for i, net in enumerate(todo):
            for other in list(state.members) + todo[i + 1:]:
                if other.version == net.version and net.overlaps(other):
                    raise Rejected(f"{to_text(net)} overlaps {to_text(other)} in the nft interval set; unblock "
                                   f"the narrower entry first or request them separately", target=self.target,
                                   detail={"value": to_text(net), "conflict": to_text(other)})

    def _scaffold_steps(self, state: DeviceState) -> list[Step]:
        base = [f"nft add table inet {TABLE}",
                f"nft add set inet {TABLE} v4 '{{ type ipv4_addr; flags interval; }}'",
                f"nft add set inet {TABLE} v6 '{{ type ipv6_addr; flags interval; }}'"]
        for chain in ("input", "forward"):
            base.append(f"nft add chain inet {TABLE} {chain} "
                        f"'{{ type filter hook {chain} priority -10; policy accept; }}'")
        for chain, rules in (("input", _INPUT_RULES), ("forward", _FORWARD_RULES)):
            body = "; ".join([f"flush chain inet {TABLE} {chain}"] +
                             [f"add rule inet {TABLE} {chain} {r}" for r in rules])
            base.append(f"nft '{body}'")
        return [Step(line) for line in base]

    def _chunks(self, verb: str, todo: list[Network]) -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = []
        for family in ("v4", "v6"):
            batch: list[str] = []
            nets = [to_text(n) for n in todo if (n.version == 4) == (family == "v4")]
            for i, text in enumerate(nets):
                batch.append(text)
                if len(", ".join(batch)) > _LINE_BUDGET or i == len(nets) - 1:
                    out.append((family, verb, ", ".join(batch)))
                    batch = []
        return out

    def _element_steps(self, todo: list[Network], verb: str, back: str) -> list[Step]:
        return [Step(f"nft {verb} element inet {TABLE} {fam} '{{ {elems} }}'",
                     undo=(f"nft {back} element inet {TABLE} {fam} '{{ {elems} }}'",))
                for fam, _, elems in self._chunks(verb, todo)]

    def _add_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return self._element_steps(todo, "add", "delete")

    def _remove_steps(self, todo: list[Network], state: DeviceState) -> list[Step]:
        return self._element_steps(todo, "delete", "add")

    def _send_chunk(self, lines: list[str]) -> list[str]:
        return [self._show(f"{self._cmd(line)} 2>&1; echo __RC=$?") for line in lines]

    def _error_in(self, line: str, out: str) -> DeviceError | None:
        m = _RC.search(out)
        if m and m.group(1) == "0":
            return None
        status = m.group(1) if m else "unknown"
        return DeviceError(line, f"exit status {status}: {' '.join(_RC.sub('', out).split())[:300]}")

    def _persist_preview(self, applied: bool) -> list[str]:
        path = self.options.get("persist_file")
        return [f"nft list table inet {TABLE} > {path}"] if path else []

    def persistence_note(self) -> str | None:
        path = self.options.get("persist_file")
        if not path:
            return (f"NOT persistent: table inet {TABLE} lives in the running kernel only and is gone after a "
                    "reboot of the router (set options.persist_file and include that file from the boot-time "
                    "nftables configuration to keep blocks)")
        return (f"saved to {path}; it survives a reboot only if the boot-time nftables configuration includes it "
                f"(e.g. include \"{path}\" in /etc/nftables.conf)")

    def _save(self) -> list[str]:
        path = self.options.get("persist_file")
        if not path:
            return []
        line = f"nft list table inet {TABLE} > {path}"
        rc, out = self._run(line)
        if rc != 0:
            raise Rejected(f"{self.target}: could not write {path} (change is active, not persisted): {out[:200]}",
                           target=self.target, detail={"saved": False})
        return [line]
