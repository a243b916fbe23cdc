"""Cisco ASA and IOS console models: exec/enable/config modes, object-groups, ACLs, write memory.

Packet verdicts (``drops(src, dst)``, a TCP packet to port 80) follow the vendors' documented order: the ACL bound
``in`` on the ingress interface, then the one bound ``out`` on the egress interface; ACEs in order, first match
wins, an implicit deny ends every ACL (Cisco ASA Series CLI Configuration Guide, "Configuring Access Rules":
"Inbound access rules apply to traffic as it enters an interface ... Outbound ACLs apply to traffic as it exits an
interface", "ACLs have an implicit deny at the end of the list"; IOS command reference ``ip access-group {in |
out}``). Without an inbound ACL the ASA passes traffic only from a higher to a lower security level (inside 100 →
outside 0); IOS passes everything on an interface without an ACL. The inside networks are 10.1.0.0/24 and
192.0.2.0/24 (published servers); every other address is outside.
"""

from __future__ import annotations

import re
from typing import Any

from tests.doubles.vendor_cli.acl import acl_drops, inside, members_canon
from tests.doubles.vendor_cli.base import Model, StateBase, canon

__all__ = ["AsaModel", "AsaState", "IosModel", "IosState"]

_ASA_ERR = "{pad}^\nERROR: % Invalid input detected at '^' marker."
_IOS_ERR = "{pad}^\n% Invalid input detected at '^' marker."


class AsaState(StateBase):
    """Running config: network object-groups (member lines) and ACLs (ACE lines); ``saved`` = startup."""

    def __init__(self, acl: str = "outside_access_in", acl_out: str = "inside_access_in") -> None:
        super().__init__()
        self.acl = acl
        self.groups: dict[str, list[str]] = {}
        self.acls: dict[str, list[str]] = {acl: ["extended permit tcp any host 192.0.2.80 eq www"],
                                           acl_out: ["extended permit ip any any"]}
        # access-group bindings: (acl, direction, interface nameif)
        self.access_groups: list[tuple[str, str, str]] = [(acl, "in", "outside"), (acl_out, "in", "inside")]
        self.saved = self.running()

    def running(self) -> dict[str, Any]:
        return self.snapshot({"groups": self.groups, "acls": self.acls, "access_groups": self.access_groups})

    def unbind_outbound(self) -> None:
        """The inside ACL exists but is applied nowhere (an operator removed its access-group)."""
        self.access_groups = [g for g in self.access_groups if g[2] != "inside"]

    def drops(self, src: str, dst: str) -> bool:
        """ASA verdict for a TCP packet src → dst:80 (see the module docstring for the order)."""
        ingress, egress = ("inside" if inside(src) else "outside"), ("inside" if inside(dst) else "outside")
        if ingress == egress:
            return False
        level = {"inside": 100, "outside": 0}
        for acl, direction, iface in self.access_groups:
            if (direction, iface) == ("in", ingress):
                if acl_drops(self.acls.get(acl, []), src, dst, self.groups):
                    return True
                break
        else:
            if level[ingress] <= level[egress]:
                return True   # lower → higher security level needs an inbound ACL that permits it
        for acl, direction, iface in self.access_groups:
            if (direction, iface) == ("out", egress):
                return acl_drops(self.acls.get(acl, []), src, dst, self.groups)
        return False

    @property
    def blocklist(self) -> set[str]:
        return members_canon(self.groups.get("IR-BLOCKLIST", []))

    @property
    def saved_blocklist(self) -> set[str]:
        return members_canon(self.saved["groups"].get("IR-BLOCKLIST", []))

    @property
    def rule_references_group(self) -> bool:
        aces = self.acls.get(self.acl, [])
        return bool(aces) and aces[0] == "extended deny ip object-group IR-BLOCKLIST any"

    def group_in_use(self, name: str) -> bool:
        return any(re.search(rf"object-group {re.escape(name)}(\s|$)", ace) for aces in self.acls.values()
                   for ace in aces)


class AsaModel(Model):
    """``asa>`` → ``enable`` → ``asa#`` → ``configure terminal`` → ``asa(config)#`` → object-group submode."""

    host = "asa"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.mode = "user"
        self.group: str | None = None

    @property
    def echo(self) -> bool:  # type: ignore[override]
        return self.mode != "password"

    def prompt(self) -> str:
        return {"user": f"{self.host}> ", "password": "Password: ", "priv": f"{self.host}# ",
                "config": f"{self.host}(config)# ", "group": f"{self.host}(config-network-object-group)# "}[self.mode]

    def reject(self, line: str) -> str:
        return _ASA_ERR.format(pad=" " * (len(self.prompt()) + max(0, len(line.split(" ")[0]) - 1)))

    def handle(self, line: str) -> str:
        cmd = " ".join(line.split())
        if self.mode == "password":
            self.mode = "priv" if line == self.sim.enable_secret else "user"
            return "" if self.mode == "priv" else "Invalid password"
        if not cmd:
            return ""
        if cmd == "show curpriv":
            level = 1 if self.mode == "user" else 15
            return f"Username : enable_{level}\nCurrent privilege level : {level}\nCurrent Mode/s : P_PRIV"
        if self.mode == "user":
            if cmd in ("enable", "en"):
                self.mode = "password"
                return ""
            if cmd == "terminal pager 0":
                return ""
            if cmd in ("exit", "logout", "quit"):
                self.closed = True
                return "Logoff"
            return self.reject(line)
        if self.mode == "group":
            out = self._group(cmd)
            if out is not None:
                return out
        if self.mode in ("config", "group"):
            return self._config(cmd, line)
        return self._priv(cmd, line)

    def _priv(self, cmd: str, line: str) -> str:
        st: AsaState = self.state
        if cmd in ("terminal pager 0", "terminal width 511"):
            return ""
        if cmd in ("configure terminal", "conf t"):
            st.config_entries += 1
            self.mode = "config"
            return ""
        if cmd in ("write memory", "write mem", "wr mem"):
            st.saved = st.running()
            st.saves += 1
            return "Building configuration...\nCryptochecksum: 8c2d4e1f 0b9a7c3e 55aa01f2 9e8d7c6b\n\n[OK]"
        if cmd == "show interface ip brief":
            return "Interface                  IP-Address      OK? Method Status                Protocol\n" + "\n".join(
                f"GigabitEthernet0/{i}         {a.split('/')[0]:<15} YES manual up                    up"
                for i, a in enumerate(st.addresses.values()))
        m = re.fullmatch(r"(clear|show) conn address ([0-9A-Fa-f:.]+)(?:-([0-9A-Fa-f:.]+))?", cmd)
        if m:
            # Cisco ASA command reference, "clear conn": "address ip1[-ip2] ... clears connections with the
            # specified source or destination IP address"; "show conn address" lists them
            flows = st.sessions.matching(either=(m.group(2), m.group(3) or m.group(2)))
            if m.group(1) == "clear":
                return f"{st.sessions.remove(flows)} connection(s) deleted."
            body = [f"{p} outside {s}:{sp} inside {d}:{dp}, idle 0:00:01, bytes 1024, flags UIO"
                    for p, s, sp, d, dp in flows]
            return "\n".join([f"{len(st.sessions.flows)} in use, {len(st.sessions.flows)} most used", *body])
        m = re.fullmatch(r"show running-config object-group id (\S+)", cmd)
        if m:
            members = st.groups.get(m.group(1))
            if members is None:
                return ""
            return "\n".join([f"object-group network {m.group(1)}"] + [f" network-object {x}" for x in members])
        m = re.fullmatch(r"show running-config access-list (\S+)", cmd)
        if m:
            return "\n".join(f"access-list {m.group(1)} {ace}" for ace in st.acls.get(m.group(1), []))
        if cmd == "show running-config access-group":
            return "\n".join(f"access-group {acl} {d} interface {i}" for acl, d, i in st.access_groups)
        if cmd in ("exit", "logout", "quit"):
            self.closed = True
            return "Logoff"
        if cmd in ("end", "disable"):
            return ""
        return self.reject(line)

    def _config(self, cmd: str, line: str) -> str:
        st: AsaState = self.state
        if (cmd in ("end", "exit") and self.mode == "config") or cmd == "end":
            self.mode = "priv"
            return ""
        if cmd == "terminal width 511":
            return ""
        m = re.fullmatch(r"object-group network (\S+)", cmd)
        if m:
            st.groups.setdefault(m.group(1), [])
            self.group, self.mode = m.group(1), "group"
            return ""
        m = re.fullmatch(r"(no )?access-list (\S+)(?: line (\d+))? (extended (?:deny|permit) ip "
                         r"(?:object-group (\S+)|any|host \S+) (?:object-group (\S+)|any|host \S+))", cmd)
        if m:
            neg, acl, pos, ace, grp, dgrp = m.groups()
            for g in (grp, dgrp):
                if g and g not in st.groups:
                    return f"ERROR: specified object group <{g}> not found"
            aces = st.acls.setdefault(acl, [])
            if neg:
                if ace not in aces:
                    return "ERROR: access-list entry does not exist"
                aces.remove(ace)
                if not aces:
                    del st.acls[acl]
                return ""
            if ace in aces:
                return f"WARNING: {acl} found duplicate element"
            aces.insert(int(pos) - 1 if pos else len(aces), ace)
            return ""
        return self.reject(line)

    def _group(self, cmd: str) -> str | None:
        st: AsaState = self.state
        assert self.group is not None
        if cmd == "exit":
            self.mode = "config"
            return ""
        m = re.fullmatch(r"(no )?network-object (host \S+|\S+ \d+\.\d+\.\d+\.\d+|\S+/\d+)", cmd)
        if not m:
            return None
        neg, body = m.groups()
        try:
            parts = body.split()
            canon(parts[-1]) if parts[0] == "host" else canon(*parts) if len(parts) == 2 else canon(parts[0])
        except ValueError:
            return f"ERROR: invalid network-object {body}"
        members = st.groups[self.group]
        if neg:
            if body not in members:
                return "ERROR: Object does not exist in the object-group"
            if len(members) == 1 and st.group_in_use(self.group):
                return f"ERROR: Object group {self.group} is in use and cannot be made empty"
            members.remove(body)
        elif body not in members:
            members.append(body)
        return ""


class IosState(StateBase):
    """Running config: object-groups, named extended ACLs with sequence numbers, interfaces' inbound ACL."""

    def __init__(self, acl: str | None = "OUTSIDE-IN", interface: str = "GigabitEthernet0/0",
                 inside: str = "GigabitEthernet0/1", acl_out: str = "INSIDE-IN") -> None:
        super().__init__()
        self.acl = acl
        self.outside, self.inside = interface, inside
        self.groups: dict[str, list[str]] = {}
        self.acls: dict[str, dict[int, str]] = {acl_out: {10: "permit ip any any"}}
        self.interfaces: dict[str, str | None] = {interface: acl, inside: acl_out}        # inbound ACL
        self.interfaces_out: dict[str, str | None] = {interface: None, inside: None}     # outbound ACL
        if acl:
            self.acls[acl] = {10: "permit tcp any host 192.0.2.80 eq www", 20: "permit ip any any"}
        self.saved = self.running()

    def running(self) -> dict[str, Any]:
        return self.snapshot({"groups": self.groups, "acls": self.acls, "interfaces": self.interfaces,
                              "interfaces_out": self.interfaces_out})

    def unbind_outbound(self) -> None:
        """The inside ACL exists but is applied nowhere (an operator removed its ``ip access-group``)."""
        self.interfaces[self.inside] = None

    def drops(self, src: str, dst: str) -> bool:
        """IOS verdict for a TCP packet src → dst:80: ingress ``in`` ACL, then egress ``out`` ACL."""
        ingress = self.inside if inside(src) else self.outside
        egress = self.inside if inside(dst) else self.outside
        if ingress == egress:
            return False
        for acl in (self.interfaces.get(ingress), self.interfaces_out.get(egress)):
            if acl and acl_drops([v for _, v in sorted(self.acls.get(acl, {}).items())], src, dst, self.groups):
                return True
        return False

    @property
    def blocklist(self) -> set[str]:
        return members_canon(self.groups.get("IR-BLOCKLIST", []))

    @property
    def saved_blocklist(self) -> set[str]:
        return members_canon(self.saved["groups"].get("IR-BLOCKLIST", []))

    @property
    def rule_references_group(self) -> bool:
        for acl in self.interfaces.values():
            entries = self.acls.get(acl or "", {})
            if entries and entries[min(entries)] == "deny ip object-group IR-BLOCKLIST any":
                return True
        return False


class IosModel(Model):
    """``Router#`` (privilege 15 login) with ``(config)``, ``(config-network-group)``, ``(config-ext-nacl)``,
    ``(config-if)`` submodes."""

    host = "Router"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.mode = "priv"
        self.ctx: str | None = None

    def prompt(self) -> str:
        return {"priv": f"{self.host}#", "config": f"{self.host}(config)#",
                "group": f"{self.host}(config-network-group)#", "nacl": f"{self.host}(config-ext-nacl)#",
                "if": f"{self.host}(config-if)#"}[self.mode]

    def reject(self, line: str) -> str:
        return _IOS_ERR.format(pad=" " * (len(self.prompt()) + 1))

    def handle(self, line: str) -> str:
        cmd = " ".join(line.split())
        st: IosState = self.state
        if not cmd:
            return ""
        if cmd == "end" and self.mode != "priv":
            self.mode = "priv"
            return ""
        if self.mode == "priv":
            return self._priv(cmd, line)
        if cmd == "exit":
            self.mode = "priv" if self.mode == "config" else "config"
            return ""
        sub = {"group": self._group, "nacl": self._nacl, "if": self._if}.get(self.mode)
        if sub is not None:
            out = sub(cmd)
            if out is not None:
                return out
        m = re.fullmatch(r"object-group network (\S+)", cmd)
        if m:
            st.groups.setdefault(m.group(1), [])
            self.ctx, self.mode = m.group(1), "group"
            return ""
        m = re.fullmatch(r"ip access-list extended (\S+)", cmd)
        if m:
            st.acls.setdefault(m.group(1), {})
            self.ctx, self.mode = m.group(1), "nacl"
            return ""
        m = re.fullmatch(r"interface (\S+)", cmd)
        if m and m.group(1) in st.interfaces:
            self.ctx, self.mode = m.group(1), "if"
            return ""
        return self.reject(line)

    def _priv(self, cmd: str, line: str) -> str:
        st: IosState = self.state
        if cmd in ("terminal width 511", "terminal length 0"):
            return ""
        if cmd in ("configure terminal", "conf t"):
            st.config_entries += 1
            self.mode = "config"
            return "Enter configuration commands, one per line.  End with CNTL/Z."
        if cmd in ("write memory", "write mem", "copy running-config startup-config"):
            st.saved = st.running()
            st.saves += 1
            return "Building configuration...\n[OK]"
        m = re.fullmatch(r"show object-group name (\S+)", cmd)
        if m:
            members = st.groups.get(m.group(1))
            if members is None:
                return ""
            return "\n".join([f"Network object group {m.group(1)}"] + [f" {x}" for x in members])
        if cmd == "show ip interface brief":
            return "Interface              IP-Address      OK? Method Status                Protocol\n" + "\n".join(
                f"GigabitEthernet0/{i}     {a.split('/')[0]:<15} YES NVRAM  up                    up"
                for i, a in enumerate(st.addresses.values()))
        m = re.fullmatch(r"show ip access-lists (\S+)", cmd)
        if m:
            entries = st.acls.get(m.group(1))
            if entries is None:
                return ""
            return "\n".join([f"Extended IP access list {m.group(1)}"] +
                             [f"    {seq} {ace}" for seq, ace in sorted(entries.items())])
        m = re.fullmatch(r"show running-config interface (\S+)", cmd)
        if m and m.group(1) in st.interfaces:
            return "Building configuration...\n\nCurrent configuration : 120 bytes\n!\n" + "\n".join(
                self._iface_lines(m.group(1))) + "\nend"
        if cmd == "show running-config | include ip access-group":
            return "\n".join(ln for name in st.interfaces for ln in self._iface_lines(name)
                             if ln.startswith(" ip access-group"))
        if cmd in ("exit", "logout"):
            self.closed = True
            return ""
        return self.reject(line)

    def _iface_lines(self, name: str) -> list[str]:
        st: IosState = self.state
        address = "10.1.0.1" if name == st.inside else "198.51.100.1"
        body = [f"interface {name}", f" ip address {address} 255.255.255.0"]
        body += [f" ip access-group {st.interfaces[name]} in"] if st.interfaces.get(name) else []
        body += [f" ip access-group {st.interfaces_out[name]} out"] if st.interfaces_out.get(name) else []
        return body

    def _group(self, cmd: str) -> str | None:
        m = re.fullmatch(r"(no )?(host \S+|\d+\.\d+\.\d+\.\d+ \d+\.\d+\.\d+\.\d+)", cmd)
        if not m:
            return None
        neg, body = m.groups()
        parts = body.split()
        try:
            canon(parts[1]) if parts[0] == "host" else canon(parts[0], parts[1])
        except ValueError:
            return "% Invalid address or mask"
        members = self.state.groups[self.ctx]
        if neg:
            if body in members:
                members.remove(body)
        elif body not in members:
            members.append(body)
        return ""

    def _nacl(self, cmd: str) -> str | None:
        entries: dict[int, str] = self.state.acls[self.ctx]
        m = re.fullmatch(r"no (\d+)", cmd)
        if m:
            entries.pop(int(m.group(1)), None)
            return ""
        m = re.fullmatch(r"(\d+ )?((?:deny|permit) ip (?:object-group (\S+)|any|host \S+) "
                         r"(?:object-group (\S+)|any|host \S+))", cmd)
        if not m:
            return None
        seq = int(m.group(1)) if m.group(1) else max(entries, default=0) + 10
        for grp in (m.group(3), m.group(4)):
            if grp and grp not in self.state.groups:
                return f"% object-group {grp} not found"
        if seq in entries:
            return "% Duplicate sequence number"
        entries[seq] = m.group(2)
        return ""

    def _if(self, cmd: str) -> str | None:
        m = re.fullmatch(r"(no )?ip access-group (\S+) (in|out)", cmd)
        if not m:
            return None
        table = self.state.interfaces if m.group(3) == "in" else self.state.interfaces_out
        table[self.ctx] = None if m.group(1) else m.group(2)
        return ""
