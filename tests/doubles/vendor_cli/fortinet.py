"""FortiGate console model: ``FGT #`` with ``config``/``edit``/``next``/``end``/``abort`` nesting, firewall
address / addrgrp / policy tables with reference checks, ``system console`` output mode (netmiko reads and sets
it). FortiOS saves each entry at ``next``/``end``: there is no separate save, so ``saved`` mirrors running."""

from __future__ import annotations

import copy
import re
from typing import Any

from tests.doubles.vendor_cli.base import PLACEHOLDER, Model, StateBase, canon

__all__ = ["FortiModel", "FortiState"]

_FAIL = "Command fail. Return code {code}"
_TABLES = ("firewall address", "firewall addrgrp", "firewall policy")


class FortiState(StateBase):
    """``tables[path][name] = {setting: value}`` in insertion (= evaluation) order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = {t: {} for t in _TABLES}
        self.tables["firewall address"]["all"] = {"subnet": "0.0.0.0 0.0.0.0"}
        self.tables["firewall policy"]["1"] = {"name": '"allow-web"', "srcintf": '"port1"', "dstintf": '"port2"',
                                               "srcaddr": '"all"', "dstaddr": '"all"', "action": "accept",
                                               "schedule": '"always"', "service": '"HTTP"'}
        self.console_output = "standard"   # "more" works too: netmiko then switches it and back

    @property
    def saved(self) -> Any:  # type: ignore[override]
        return copy.deepcopy(self.tables)

    @saved.setter
    def saved(self, value: Any) -> None:
        pass

    @property
    def blocklist(self) -> set[str]:
        grp = self.tables["firewall addrgrp"].get("IR-BLOCKLIST")
        out: set[str] = set()
        for name in re.findall(r'"([^"]+)"', grp.get("member", "")) if grp else []:
            a, m = self.tables["firewall address"][name]["subnet"].split()
            out.add(canon(a, m))
        out.discard(PLACEHOLDER)
        return out

    saved_blocklist = blocklist

    @property
    def rule_references_group(self) -> bool:
        policies = list(self.tables["firewall policy"].values())
        return bool(policies) and policies[0].get("srcaddr") == '"IR-BLOCKLIST"' and \
            policies[0].get("action") == "deny"

    def drops(self, src: str, dst: str) -> bool:
        """The policy table's verdict for src → dst: policies in order, first match wins (FortiOS evaluates
        policies top down; interfaces are not modelled). Addresses are ``all``, address objects or groups."""
        import ipaddress
        addrs, groups = self.tables["firewall address"], self.tables["firewall addrgrp"]

        def contains(ref: str, ip: str) -> bool:
            names = [n.strip('"') for n in ref.split()]
            for name in names:
                if name in groups and contains(groups[name].get("member", ""), ip):
                    return True
                subnet = addrs.get(name, {}).get("subnet")
                if subnet and ipaddress.ip_address(ip) in ipaddress.ip_network(
                        "/".join(subnet.split()), strict=False):
                    return True
            return False

        for policy in self.tables["firewall policy"].values():
            if contains(policy.get("srcaddr", ""), src) and contains(policy.get("dstaddr", ""), dst):
                return policy.get("action") == "deny"
        return False

    def referenced(self, name: str) -> bool:
        q = f'"{name}"'
        return any(q in v for t in ("firewall addrgrp", "firewall policy") for e in self.tables[t].values()
                   for k, v in e.items() if k in ("member", "srcaddr", "dstaddr"))


class FortiModel(Model):
    """One CLI session; ``self.path`` is the open ``config`` table, ``self.entry`` the open ``edit``."""

    host = "FGT"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.filter: dict[str, tuple[str, str | None]] = {}   # the CLI session's session filter
        self.path: str | None = None
        self.entry: tuple[str, dict[str, str]] | None = None

    def prompt(self) -> str:
        if self.entry:
            return f"{self.host} ({self.entry[0]}) # "
        if self.path:
            return f"{self.host} ({self.path.split()[-1]}) # "
        return f"{self.host} # "

    def reject(self, line: str) -> str:
        return ("Unknown action 0" if self.path is None else
                f"command parse error before '{line.split()[0] if line.split() else ''}'\n" + _FAIL.format(code=-61))

    def handle(self, line: str) -> str:
        cmd = line.strip()
        if not cmd:
            return ""
        if self.entry:
            return self._edit(cmd, line)
        if self.path:
            return self._table(cmd, line)
        return self._top(cmd, line)

    def _top(self, cmd: str, line: str) -> str:
        st: FortiState = self.state
        if cmd == "get system status | grep Virtual":
            return "Virtual domain configuration: disable"
        if cmd == "get system status | grep Version":
            return "Version: FortiGate-VM64 v7.2.5,build1517,230606 (GA.F)"
        if cmd == "get system console":
            return f"output              : {st.console_output}\nlogin-timeout       : 300"
        if cmd == "get system interface":
            import ipaddress
            return "\n".join(f"== [ port{i + 1} ]\nname: port{i + 1}   mode: static    ip: {a.split('/')[0]} "
                             f"{ipaddress.ip_network(a, strict=False).netmask}   status: up    type: physical"
                             for i, a in enumerate(st.addresses.values()))
        if cmd.startswith("diagnose sys session"):
            return self._sessions(cmd, line)
        m = re.fullmatch(r"config (firewall address|firewall addrgrp|firewall policy|system console)", cmd)
        if m:
            st.config_entries += 1
            self.path = m.group(1)
            return ""
        m = re.fullmatch(r"show (firewall address|firewall addrgrp|firewall policy)(?: (\S+))?", cmd)
        if m:
            table = st.tables[m.group(1)]
            names = [m.group(2)] if m.group(2) else list(table)
            body = [f"config {m.group(1)}"]
            for name in names:
                if name in table:
                    body.append(f'    edit "{name}"' if not name.isdigit() else f"    edit {name}")
                    body += [f"        set {k} {v}" for k, v in table[name].items()]
                    body.append("    next")
            return "\n".join(body + ["end"])
        if cmd in ("exit", "quit"):
            self.closed = True
            return ""
        return self.reject(line)

    def _sessions(self, cmd: str, line: str) -> str:
        """FortiOS session table (Fortinet KB "clear sessions matching a filter": ``diagnose sys session filter
        src|dst <from> [<to>]``, then ``diagnose sys session list`` / ``clear``). The filter belongs to the CLI
        session; ``clear`` with no filter set clears EVERY session on the unit — failures first."""
        st: FortiState = self.state
        if cmd == "diagnose sys session filter clear":
            self.filter = {}
            return ""
        m = re.fullmatch(r"diagnose sys session filter (src|dst) ([0-9.]+)(?: ([0-9.]+))?", cmd)
        if m:
            self.filter[m.group(1)] = (m.group(2), m.group(3) or m.group(2))
            return ""
        flows = st.sessions.matching(src=self.filter.get("src"), dst=self.filter.get("dst"))
        if cmd == "diagnose sys session clear":
            st.sessions.remove(flows)
            return ""
        if cmd == "diagnose sys session list":
            body = [f"session info: proto=6 proto_state=01 duration=42 expire=3599 timeout=3600\n"
                    f"hook=pre dir=org act=noop {s}:{sp}->{d}:{dp}(0.0.0.0:0)" for _, s, sp, d, dp in flows]
            return "\n".join([*body, f"total session {len(flows)}"])
        return self.reject(line)

    def _table(self, cmd: str, line: str) -> str:
        st: FortiState = self.state
        if self.path == "system console":
            m = re.fullmatch(r"set output (standard|more)", cmd)
            if m:
                st.console_output = m.group(1)
                return ""
            if cmd in ("end", "abort"):
                self.path = None
                return ""
            return self.reject(line)
        table = st.tables[self.path or ""]
        if cmd in ("end", "abort"):
            self.path = None
            return ""
        m = re.fullmatch(r'edit "?([^"\s]+)"?', cmd)
        if m:
            name = m.group(1)
            if self.path == "firewall policy" and not name.isdigit():
                return "entry not found in datasource\n" + _FAIL.format(code=-3)
            self.entry = (name, copy.deepcopy(table.get(name, {})))
            return ""
        m = re.fullmatch(r'delete "?([^"\s]+)"?', cmd)
        if m:
            if m.group(1) not in table:
                return "entry not found in datasource\n\nvalue parse error before '" + m.group(1) + "'\n" + \
                    _FAIL.format(code=-3)
            if st.referenced(m.group(1)):
                return "The entry is used by other 1 entries\n" + _FAIL.format(code=-23)
            del table[m.group(1)]
            return ""
        m = re.fullmatch(r"move (\d+) (before|after) (\d+)", cmd)
        if m and self.path == "firewall policy":
            a, where, b = m.groups()
            if a not in table or b not in table:
                return "entry not found in datasource\n" + _FAIL.format(code=-3)
            item = table.pop(a)
            keys = list(table)
            idx = keys.index(b) + (1 if where == "after" else 0)
            keys.insert(idx, a)
            st.tables[self.path] = {k: (item if k == a else table[k]) for k in keys}
            return ""
        return self.reject(line)

    def _edit(self, cmd: str, line: str) -> str:
        st: FortiState = self.state
        assert self.entry is not None and self.path is not None
        name, data = self.entry
        if cmd in ("next", "end"):
            if self.path == "firewall address" and "subnet" not in data:
                data["subnet"] = "0.0.0.0 0.0.0.0"
            if self.path == "firewall addrgrp" and not data.get("member"):
                self.entry = None
                return "the group must have at least one member\n" + _FAIL.format(code=-651)
            st.tables[self.path][name] = data
            self.entry = None
            if cmd == "end":
                self.path = None
            return ""
        if cmd == "abort":
            self.entry = None
            return ""
        m = re.fullmatch(r"(set|append|unselect) (\S+) (.+)", cmd)
        if not m:
            return self.reject(line)
        verb, key, value = m.groups()
        if key == "subnet" and self.path == "firewall address" and verb == "set":
            parts = value.replace("/", " ").split()
            try:
                mask = parts[1] if "." in parts[1] else str(parts[1])
                canon(parts[0], mask)
            except (ValueError, IndexError):
                return f"node_check_object fail! for subnet {value}\n\nvalue parse error before '{value}'\n" + \
                    _FAIL.format(code=-651)
            data["subnet"] = f"{parts[0]} {mask}"
            return ""
        if key in ("member", "srcaddr", "dstaddr"):
            names = [n.strip('"') for n in value.split()]
            for n in names:
                if n not in st.tables["firewall address"] and n not in st.tables["firewall addrgrp"]:
                    return f"entry not found in datasource\n\nvalue parse error before '{n}'\n" + \
                        _FAIL.format(code=-3)
            current = re.findall(r'"([^"]+)"', data.get(key, ""))
            if verb == "set":
                current = names
            elif verb == "append":
                current += [n for n in names if n not in current]
            else:
                current = [n for n in current if n not in names]
            data[key] = " ".join(f'"{n}"' for n in current)
            return ""
        if verb == "set" and key in ("name", "srcintf", "dstintf", "schedule", "service", "action", "comments"):
            data[key] = value if key == "action" else f'"{value.strip(chr(34))}"'
            return ""
        return self.reject(line)
