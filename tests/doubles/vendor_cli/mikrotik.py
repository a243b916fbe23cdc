"""RouterOS console model: ``[admin@MikroTik] >``, ``/ip firewall address-list`` and ``/ip firewall raw`` with
``add``/``remove [find ...]``/``move``/``print terse without-paging [where ...]``. Every command is applied and
saved at once (``saved`` mirrors running).

Connection tracking (RouterOS manual, "Connection tracking", ``/ip firewall connection``): the table holds the
state's flows with ``src-address``/``dst-address`` as ``ip:port``; ``remove [find src-address~"RE"]`` and ``print
count-only where dst-address~"RE"`` match a POSIX regular expression against that text. The expression is a
RouterOS double-quoted string: a backslash escapes a backslash, quote, dollar or question mark, and a bare ``$``
starts a variable substitution ("Scripting" manual) — refused here as the undefined variable it would be.
"""

from __future__ import annotations

import re
from typing import Any

from tests.doubles.vendor_cli.base import Model, StateBase, canon

__all__ = ["MikrotikModel", "MikrotikState"]

_KV = re.compile(r'(\S+?)=("[^"]*"|\S+)')


class MikrotikState(StateBase):
    """``lists``: address-list entries; ``raw``: raw rules in order (dicts of properties)."""

    def __init__(self) -> None:
        super().__init__()
        self.lists: list[dict[str, str]] = [{"list": "trusted", "address": "192.0.2.10"}]
        self.raw: list[dict[str, str]] = [{"chain": "prerouting", "action": "accept", "src-address-list": "trusted"}]

    @property
    def saved(self) -> Any:  # type: ignore[override]
        return {"lists": self.lists, "raw": self.raw}

    @saved.setter
    def saved(self, value: Any) -> None:
        pass

    @property
    def blocklist(self) -> set[str]:
        return {canon(e["address"]) for e in self.lists if e["list"] == "IR-BLOCKLIST"}

    saved_blocklist = blocklist

    def drops(self, src: str, dst: str) -> bool:
        """What the raw prerouting chain does with a packet src → dst: rules in order, first match wins
        (RouterOS manual, "Firewall → Raw"); no match → the packet goes on (not dropped here)."""
        import ipaddress

        def listed(name: str, addr: str) -> bool:
            return any(e["list"] == name and ipaddress.ip_address(addr) in ipaddress.ip_network(e["address"])
                       for e in self.lists)

        for rule in self.raw:
            if rule.get("chain") != "prerouting":
                continue
            if "src-address-list" in rule and not listed(rule["src-address-list"], src):
                continue
            if "dst-address-list" in rule and not listed(rule["dst-address-list"], dst):
                continue
            return rule.get("action") == "drop"
        return False

    @property
    def rule_references_group(self) -> bool:
        return bool(self.raw) and self.raw[0].get("src-address-list") == "IR-BLOCKLIST" and \
            self.raw[0].get("action") == "drop" and self.raw[0].get("chain") == "prerouting"


def _matches(entry: dict[str, str], where: str) -> bool:
    return all(entry.get(k) == v.strip('"') for k, v in _KV.findall(where))


class MikrotikModel(Model):
    """One CLI session (no modes)."""

    def greeting(self) -> str:
        return "\n\n  MikroTik RouterOS 7.14 (c) 1999-2024       https://www.mikrotik.com/\n\n"

    def prompt(self) -> str:
        return "[admin@MikroTik] > "

    def reject(self, line: str) -> str:
        word = line.split()[0] if line.split() else ""
        return f"bad command name {word.lstrip('/')} (line 1 column 2)"

    def handle(self, line: str) -> str:
        cmd = " ".join(line.split())
        if not cmd:
            return ""
        if cmd == "quit":
            self.closed = True
            return "interrupted"
        if cmd == "/ip address print terse without-paging":
            return "\n".join(f"{i:>2}     address={a} network={a.split('/')[0]} interface=ether{i + 1}"
                             for i, a in enumerate(self.state.addresses.values()))
        m = re.fullmatch(r"/ip firewall connection (remove \[find where|print terse without-paging where) (.*?)\]?",
                         cmd)
        if m:
            return self._connections(m.group(1).split()[0], m.group(2))
        m = re.fullmatch(r"/ip firewall (address-list|raw) (.+)", cmd)
        if not m:
            return self.reject(line)
        table = self.state.lists if m.group(1) == "address-list" else self.state.raw
        return self._table(table, m.group(1), m.group(2), line)

    def _connections(self, verb: str, where: str) -> str:
        """``where`` is ``(src|dst)-address~"RE"`` terms joined by ``or``; RE is a RouterOS string (see above)."""
        tests: list[tuple[str, re.Pattern[str]]] = []
        for term in where.split(" or "):
            m = re.fullmatch(r'(src|dst)-address~"(.*)"', term.strip())
            if not m:
                return "syntax error (line 1 column 1)"
            text = _unquote(m.group(2))
            if text.startswith("syntax error") or text.startswith("expected"):
                return text
            try:
                tests.append((m.group(1), re.compile(text)))
            except re.error:
                return "invalid regular expression"
        flows = self.state.sessions

        def hit(f: tuple[str, str, int, str, int]) -> bool:
            return any(rx.search(f"{f[1]}:{f[2]}" if side == "src" else f"{f[3]}:{f[4]}") for side, rx in tests)

        hits = [f for f in flows.flows if hit(f)]
        if verb == "print":
            return "\n".join(f"{i:>2}    protocol={p.lower()} src-address={s}:{sp} dst-address={d}:{dp} "
                             "tcp-state=established" for i, (p, s, sp, d, dp) in enumerate(hits))
        flows.remove(hits)
        return ""

    def _table(self, table: list[dict[str, str]], kind: str, rest: str, line: str) -> str:
        m = re.fullmatch(r"print terse without-paging(?: where (.+))?", rest)
        if m:
            rows = [e for e in table if not m.group(1) or _matches(e, m.group(1))]
            return "\n".join(f"{i:>2}    " + " ".join(f"{k}={v}" for k, v in e.items()) for i, e in enumerate(rows))
        m = re.fullmatch(r"add (.+)", rest)
        if m:
            props = {k: v.strip('"') for k, v in _KV.findall(m.group(1))}
            place = props.pop("place-before", None)
            if kind == "address-list":
                try:
                    props["address"] = canon(props["address"])
                except (KeyError, ValueError):
                    return "invalid value for argument address"
                if any(e["list"] == props.get("list") and e["address"] == props["address"] for e in table):
                    return "failure: already have such entry"
            if place is not None:
                if not table or not place.isdigit() or int(place) >= len(table):
                    return "failure: no such item"
                table.insert(int(place), props)
            else:
                table.append(props)
            return ""
        m = re.fullmatch(r"remove \[find (.+)\]", rest)
        if m:
            keep = [e for e in table if not _matches(e, m.group(1))]
            table[:] = keep
            return ""
        m = re.fullmatch(r"move \[find (.+)\] destination=(\d+)", rest)
        if m:
            found = [e for e in table if _matches(e, m.group(1))]
            if not found:
                return "failure: no such item"
            for e in found:
                table.remove(e)
            table[int(m.group(2)):int(m.group(2))] = found
            return ""
        return "syntax error (line 1 column 21)"


def _unquote(quoted: str) -> str:
    """The value of a RouterOS double-quoted string body; a bare ``"`` or ``$`` is the error RouterOS gives."""
    text, i = "", 0
    while i < len(quoted):
        ch = quoted[i]
        if ch == "\\":
            if i + 1 >= len(quoted) or quoted[i + 1] not in '\\"$?':
                return f"syntax error (line 1 column {i + 1})"
            text, i = text + quoted[i + 1], i + 2
            continue
        if ch == '"':
            return f"syntax error (line 1 column {i + 1})"
        if ch == "$":
            return f"expected variable name (line 1 column {i + 2})"
        text, i = text + ch, i + 1
    return text
