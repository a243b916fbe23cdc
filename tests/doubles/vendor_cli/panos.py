"""PAN-OS console model: ``admin@PA-VM>`` operational mode, ``configure`` → ``[edit]`` / ``admin@PA-VM#``; a
candidate configuration edited by ``set``/``delete``/``move``, validated and copied to running by ``commit``,
dropped by ``revert config``. ``show config running | match X`` answers in set format (what the connector asks
for after ``set cli config-output-format set``).

Several administrators (modelled from the vendor documentation, failures first):

- The candidate is shared: every admin's uncommitted edits live in it. A plain ``commit`` commits *all* of them
  and ``revert config`` drops all of them; ``commit partial admin <name>`` / ``revert config partial admin
  <name>`` act on that admin's changes only (PAN-OS CLI: "commit partial ... admin [ <admin1> <admin2>... ]",
  "revert config ... partial ... admin [ <admin1> <admin2>... ]", PAN-OS 10.0 configure CLI command hierarchy,
  docs.paloaltonetworks.com/pan-os/10-0/cli-reference; PAN-OS XML API "Partial commit admin-level changes").
  The state keeps each admin's edits as an ordered change log; the candidate is running + the log replayed.
- A *config lock* "blocks other administrators from changing the candidate configuration"; a *commit lock*
  "blocks other administrators from committing" (PAN-OS admin guide, "Manage Locks for Restricting
  Configuration Changes"). The refusal texts here are modelled, not copied: the connector keys on "locked".
"""

from __future__ import annotations

import copy
import re
from typing import Any

from tests.doubles.vendor_cli.base import PLACEHOLDER, Model, StateBase, canon

__all__ = ["PanosModel", "PanosState"]

_RULE_KEYS = ("from", "to", "source", "destination", "application", "service", "action")


def _empty() -> dict[str, Any]:
    return {"address": {}, "address-group": {}, "rules": {}}


class PanosState(StateBase):
    """``candidate``/``running``: addresses {name: cidr}, address-groups {name: [members]}, rules in order."""

    def __init__(self) -> None:
        super().__init__()
        self.running = _empty()
        self.running["address"]["web-srv"] = "192.0.2.80/32"
        self.running["rules"]["allow-web"] = {"from": "untrust", "to": "trust", "source": "any",
                                              "destination": "web-srv", "application": "web-browsing",
                                              "service": "application-default", "action": "allow"}
        self.changes: list[tuple[str, str]] = []   # (admin, command) not yet committed, in order
        self.commits = 0
        self.config_lock: str | None = None    # admin holding a config lock
        self.commit_lock: str | None = None    # admin holding a commit lock

    @property
    def candidate(self) -> dict[str, Any]:
        return self.replay(self.running, self.changes)

    def replay(self, base: dict[str, Any], changes: list[tuple[str, str]]) -> dict[str, Any]:
        cfg = copy.deepcopy(base)
        for _admin, cmd in changes:
            apply_edit(cfg, cmd)
        return cfg

    def foreign_edit(self, admin: str, cmd: str) -> None:
        """Another administrator's uncommitted edit (tests: "someone else is half-way through a change")."""
        problem = apply_edit(copy.deepcopy(self.candidate), cmd)
        assert problem == "", problem
        self.changes.append((admin, cmd))

    def pending_of(self, admin: str) -> list[str]:
        return [cmd for who, cmd in self.changes if who == admin]

    @property
    def saved(self) -> Any:  # type: ignore[override]
        return self.running

    @saved.setter
    def saved(self, value: Any) -> None:
        pass

    def _members(self, cfg: dict[str, Any]) -> set[str]:
        out = {canon(cfg["address"][m]) for m in cfg["address-group"].get("IR-BLOCKLIST", [])}
        out.discard(PLACEHOLDER)
        return out

    @property
    def blocklist(self) -> set[str]:
        return self._members(self.running)

    saved_blocklist = blocklist

    @property
    def candidate_blocklist(self) -> set[str]:
        return self._members(self.candidate)

    @property
    def rule_references_group(self) -> bool:
        rules = list(self.running["rules"].items())
        return bool(rules) and rules[0][0] == "IR-BLOCK" and rules[0][1].get("source") == "IR-BLOCKLIST" and \
            rules[0][1].get("action") == "deny"

    def drops(self, src: str, dst: str) -> bool:
        """The running security policy's verdict for src → dst: rules in order, first match wins (zones are not
        modelled); a rule's source/destination is ``any``, an address object or an address group."""
        import ipaddress
        cfg = self.running

        def contains(ref: str, addr: str) -> bool:
            if ref == "any":
                return True
            if ref in cfg["address-group"]:
                return any(contains(m, addr) for m in cfg["address-group"][ref])
            cidr = cfg["address"].get(ref)
            return cidr is not None and ipaddress.ip_address(addr) in ipaddress.ip_network(cidr, strict=False)

        for rule in cfg["rules"].values():
            if contains(rule.get("source", "any"), src) and contains(rule.get("destination", "any"), dst):
                return rule.get("action") == "deny"
        return False

    def set_lines(self, cfg: dict[str, Any]) -> list[str]:
        out = [f"set address {n} ip-netmask {v}" for n, v in cfg["address"].items()]
        out += [f"set address-group {n} static [ {' '.join(m)} ]" for n, m in cfg["address-group"].items()]
        for name, rule in cfg["rules"].items():
            out += [f"set rulebase security rules {name} {k} {v}" for k, v in rule.items()]
        return out

    def validate(self, cfg: dict[str, Any]) -> str | None:
        for name, members in cfg["address-group"].items():
            if not members:
                return f"address-group -> {name} -> static is missing"
            for m in members:
                if m not in cfg["address"] and m not in cfg["address-group"]:
                    return f"address-group -> {name} -> static '{m}' is not a valid reference"
        for name, rule in cfg["rules"].items():
            for key in ("source", "destination"):
                v = rule.get(key, "any")
                if v != "any" and v not in cfg["address"] and v not in cfg["address-group"]:
                    return f"rulebase -> security -> rules -> {name} -> {key} '{v}' is not a valid reference"
        return None


class PanosModel(Model):
    """One CLI session (operational or configuration mode)."""

    host = "admin@PA-VM"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.config = False
        self.set_format = False

    def greeting(self) -> str:
        return ("Last login: Mon May  6 10:00:00 2024 from 127.0.0.1\n\nNumber of failed attempts since last "
                "successful login: 0\n\n")

    def prompt(self) -> str:
        return f"\n[edit]\n{self.host}# " if self.config else f"{self.host}> "

    def reject(self, line: str) -> str:
        if line.strip().startswith("commit"):
            return ("Commit job 7 is in progress. Use Ctrl+C to return to command prompt\n"
                    "...55%...75%\nValidation Error:\n address-group -> IR-BLOCKLIST is invalid\nCommit failed")
        return "Invalid syntax." if self.config else f"Unknown command: {line.split()[0] if line.split() else ''}"

    def handle(self, line: str) -> str:
        cmd = " ".join(line.split())
        if not cmd:
            return ""
        return self._config(cmd, line) if self.config else self._op(cmd, line)

    def _op(self, cmd: str, line: str) -> str:
        st: PanosState = self.state
        if cmd in ("set cli scripting-mode on", "set cli terminal width 500", "set cli pager off"):
            return ""
        if cmd == "set cli config-output-format set":
            self.set_format = True
            return ""
        if cmd == "show system info":
            return ("hostname: PA-VM\nip-address: 192.0.2.1\nmodel: PA-VM\nsw-version: 10.2.4\n"
                    "operational-mode: normal\n")
        m = re.fullmatch(r'show config running \| match "?([^"]+)"?', cmd)
        if m:
            if not self.set_format:
                return "config {\n  ...\n}"
            return "\n".join(ln for ln in st.set_lines(st.running) if m.group(1) in ln)
        if cmd == "show interface logical":
            return ("name                id    vsys zone             forwarding               tag    address\n"
                    "------------------- ----- ---- ---------------- ------------------------ ------ ------------\n"
                    + "\n".join(f"ethernet1/{i + 1}          {16 + i}    1    {zone:<16} vr:default"
                                f"               0      {a}" for i, (zone, a) in enumerate(st.addresses.items())))
        m = re.fullmatch(r"(clear|show) session all filter (source|destination) (\S+)( count yes)?", cmd)
        if m:
            # PAN-OS CLI: "show session all filter source|destination <ip>" and "clear session all filter ...";
            # established sessions stay until cleared or re-matched
            side = {"source": "src", "destination": "dst"}[m.group(2)]
            try:
                flows = st.sessions.matching(**{side: (m.group(3), None)})
            except ValueError:
                return self.reject(line)
            if m.group(1) == "clear":
                return f"Number of sessions that match filter: {st.sessions.remove(flows)}\nsessions cleared"
            return f"Number of sessions that match filter: {len(flows)}"
        if cmd == "configure":
            st.config_entries += 1
            self.config = True
            return "Entering configuration mode"
        if cmd in ("exit", "quit"):
            self.closed = True
            return ""
        return self.reject(line)

    def _config(self, cmd: str, line: str) -> str:
        st: PanosState = self.state
        admin = self.sim.username
        if cmd in ("exit", "quit"):
            self.config = False
            return ""
        m = re.fullmatch(r"commit(?: partial admin (?:\[ ?)?([\w.@-]+(?: [\w.@-]+)*?)(?: ?\])?)?", cmd)
        if m:
            head = "Commit job 7 is in progress. Use Ctrl+C to return to command prompt\n...55%...75%...98%...100%\n"
            if st.commit_lock and st.commit_lock != admin:
                # Commit lock: "blocks other administrators from committing" (PAN-OS "Manage Locks ...")
                return f"Commit failed: commit is locked by {st.commit_lock}"
            admins = set(m.group(1).split()) if m.group(1) else None
            mine = [c for c in st.changes if admins is None or c[0] in admins]
            result = st.replay(st.running, mine)
            problem = st.validate(result)
            if problem:
                return head + f"Validation Error:\n {problem}\nCommit failed"
            st.running = result
            st.changes = [c for c in st.changes if c not in mine]
            st.commits += 1
            st.saves += 1
            return head + "Configuration committed successfully"
        m = re.fullmatch(r"revert config(?: partial admin (?:\[ ?)?([\w.@-]+(?: [\w.@-]+)*?)(?: ?\])?)?", cmd)
        if m:
            admins = set(m.group(1).split()) if m.group(1) else None
            st.changes = [c for c in st.changes if admins is not None and c[0] not in admins]
            return "Config reverted"
        if st.config_lock and st.config_lock != admin:
            # Config lock: other admins cannot change the candidate (PAN-OS "Manage Locks ...")
            return f"Server error : Config for scope shared is currently locked by {st.config_lock}"
        problem = apply_edit(copy.deepcopy(st.candidate), cmd)
        if problem == "syntax":
            return self.reject(line)
        if problem:
            return problem
        st.changes.append((admin, cmd))
        return ""


def apply_edit(cand: dict[str, Any], cmd: str) -> str:
    """Apply one configuration command to ``cand``: "" when accepted, "syntax", or the device's error text."""
    m = re.fullmatch(r"set address (\S+) ip-netmask (\S+)", cmd)
    if m:
        try:
            canon(m.group(2))
        except ValueError:
            return "syntax"
        cand["address"][m.group(1)] = m.group(2)
        return ""
    m = re.fullmatch(r"set address-group (\S+) static (\S+)", cmd)
    if m:
        members = cand["address-group"].setdefault(m.group(1), [])
        if m.group(2) not in members:
            members.append(m.group(2))
        return ""
    m = re.fullmatch(r"set rulebase security rules (\S+) (.+)", cmd)
    if m:
        words = m.group(2).split()
        if len(words) % 2 or any(k not in _RULE_KEYS for k in words[::2]):
            return "syntax"
        cand["rules"].setdefault(m.group(1), {}).update(dict(zip(words[::2], words[1::2], strict=True)))
        return ""
    m = re.fullmatch(r"move rulebase security rules (\S+) (top|bottom)", cmd)
    if m:
        if m.group(1) not in cand["rules"]:
            return f"Server error : move failed. {m.group(1)} does not exist"
        rule = cand["rules"].pop(m.group(1))
        rest = list(cand["rules"].items())
        cand["rules"] = dict([(m.group(1), rule)] + rest if m.group(2) == "top" else rest + [(m.group(1), rule)])
        return ""
    m = re.fullmatch(r"delete address-group (\S+) static (\S+)", cmd)
    if m:
        members = cand["address-group"].get(m.group(1), [])
        if m.group(2) in members:
            members.remove(m.group(2))
        return ""
    m = re.fullmatch(r"delete address (\S+)", cmd)
    if m:
        if any(m.group(1) in mm for mm in cand["address-group"].values()):
            return (f"Server error : {m.group(1)} cannot be deleted because of references from:\n"
                    " address-group -> IR-BLOCKLIST -> static")
        cand["address"].pop(m.group(1), None)
        return ""
    return "syntax"
