"""Junos console model: ``user@srx>`` operational mode, ``configure`` → ``[edit]`` / ``user@srx#``. The
configuration is a list of ``set`` statements (candidate and committed); ``insert ... before`` reorders filter
terms; ``commit confirmed N`` records a pending rollback that ``show system commit`` reports until a plain
``commit`` confirms it; ``rollback 0`` drops candidate changes; leaving with uncommitted changes asks first.

Other administrators (Junos CLI User Guide, "Commit Operation When Multiple Users Configure the Software",
juniper.net/documentation/en_US/junos12.2/topics/concept/junos-cli-multiple-users-usage-overview.html; command
reference "configure", .../junos12.3/topics/reference/command-summary/configure.html):

- plain ``configure`` shares one candidate: "all changes made by all users are visible", and a ``commit``
  "checks and activates all changes made by all users"; ``rollback 0`` likewise drops everyone's edits.
- ``configure exclusive`` locks the candidate: "other users can enter and exit configuration mode, but they
  cannot change the configuration" — their edits fail with ``error: configuration database locked by: ...``.
- ``configure private`` gives a private copy; "when you commit the configuration, only your own changes get
  committed". It cannot be entered while the shared candidate holds uncommitted changes
  (``error: shared configuration database modified`` listing who edits), nor while an exclusive lock is held;
  a private commit fails likewise if the shared candidate was modified meanwhile (Junos XML protocol guide,
  "Commit a Private Copy of the Configuration"). Leaving private mode discards uncommitted private changes.
  ``rollback 0`` in private mode drops only the private changes.

Packet verdicts (``drops(src, dst)``, a TCP packet): the ``input`` filter of the unit the packet arrives on, then
the ``output`` filter of the unit it leaves by (Junos OS "Firewall Filters Overview" / "Applying Firewall Filters
to Interfaces": ``family inet filter input`` filters received packets, ``filter output`` transmitted ones); terms
in order, first matching term decides (``accept`` passes, ``discard``/``reject`` drop), and a packet no term
matches is discarded (the implicit ``discard`` at the end of every filter). ge-0/0/0 is outside, ge-0/0/1 inside
(10.1.0.0/24, 192.0.2.0/24).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from tests.doubles.vendor_cli.base import PLACEHOLDER, Model, StateBase, canon

__all__ = ["JunosModel", "JunosState"]

_FILTER = "firewall family inet filter EDGE-IN"
_FILTER_OUT = "firewall family inet filter EDGE-OUT"
_INSIDE = tuple(ipaddress.ip_network(n) for n in ("10.1.0.0/24", "192.0.2.0/24"))


class JunosState(StateBase):
    """``candidate``/``committed`` set statements; ``pending_confirm`` minutes of an unconfirmed commit."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = [f"set {_FILTER} term allow-ssh from protocol tcp",
                          f"set {_FILTER} term allow-ssh then accept",
                          f"set {_FILTER} term default then accept",
                          f"set {_FILTER_OUT} term default then accept",
                          "set interfaces ge-0/0/0 unit 0 family inet filter input EDGE-IN",
                          "set interfaces ge-0/0/0 unit 0 family inet filter output EDGE-OUT"]
        self.candidate = list(self.committed)
        self.pending_confirm: int | None = None
        self.confirmed_commits = 0
        self.exclusive: str | None = None        # "who" line of the session holding configure exclusive
        self.editors: list[str] = []             # other users in plain configure mode ("who" lines)

    def foreign_edit(self, who: str, stmt: str) -> None:
        """Another user's uncommitted edit in the shared candidate (plain ``configure``)."""
        self.editors.append(who)
        self.candidate.append(stmt)

    def users_editing(self) -> str:
        return "Users currently editing the configuration:\n" + "\n".join(
            f"  {who}\n      [edit]" for who in self.editors or ["(none)"])

    @property
    def saved(self) -> Any:  # type: ignore[override]
        return self.committed

    @saved.setter
    def saved(self, value: Any) -> None:
        pass

    def members(self, cfg: list[str]) -> set[str]:
        out = {canon(ln.split()[-1]) for ln in cfg if ln.startswith("set policy-options prefix-list IR-BLOCKLIST ")}
        out.discard(PLACEHOLDER)
        return out

    @property
    def blocklist(self) -> set[str]:
        return self.members(self.committed)

    saved_blocklist = blocklist

    @property
    def rule_references_group(self) -> bool:
        terms = [ln.split()[7] for ln in self.committed if ln.startswith(f"set {_FILTER} term ")]
        return bool(terms) and terms[0] == "IR-BLOCK" and \
            f"set {_FILTER} term IR-BLOCK from source-prefix-list IR-BLOCKLIST" in self.committed and \
            f"set {_FILTER} term IR-BLOCK then discard" in self.committed

    def unbind_outbound(self) -> None:
        """EDGE-OUT exists but no interface applies it any more."""
        self.committed = [ln for ln in self.committed if not ln.endswith("filter output EDGE-OUT")]
        self.candidate = list(self.committed)

    def drops(self, src: str, dst: str) -> bool:
        """Junos verdict for a TCP packet src → dst (see the module docstring)."""
        def unit(addr: str) -> str:
            return "ge-0/0/1" if any(ipaddress.ip_address(addr) in n for n in _INSIDE) else "ge-0/0/0"

        ingress, egress = unit(src), unit(dst)
        if ingress == egress:
            return False
        for iface, direction in ((ingress, "input"), (egress, "output")):
            prefix = f"set interfaces {iface} unit 0 family inet filter {direction} "
            name = next((ln[len(prefix):] for ln in self.committed if ln.startswith(prefix)), None)
            if name and self._filter_drops(name, src, dst):
                return True
        return False

    def _filter_drops(self, name: str, src: str, dst: str) -> bool:
        prefix = f"set firewall family inet filter {name} term "
        terms: dict[str, list[str]] = {}
        for ln in self.committed:
            if ln.startswith(prefix):
                term, rest = ln[len(prefix):].split(" ", 1)
                terms.setdefault(term, []).append(rest)

        def listed(plist: str, addr: str) -> bool:
            return any(ipaddress.ip_address(addr) in ipaddress.ip_network(ln.split()[-1], strict=False)
                       for ln in self.committed if ln.startswith(f"set policy-options prefix-list {plist} "))

        for body in terms.values():
            matched, action = True, None
            for rest in body:
                words = rest.split()
                if words[:2] == ["from", "source-prefix-list"]:
                    matched = matched and listed(words[2], src)
                elif words[:2] == ["from", "destination-prefix-list"]:
                    matched = matched and listed(words[2], dst)
                elif words[:2] == ["from", "protocol"]:
                    matched = matched and words[2] == "tcp"
                elif words[0] == "then":
                    action = words[1]
            if matched and action:
                return action in ("discard", "reject")
        return True   # implicit discard at the end of every filter

    def check(self, cfg: list[str]) -> str | None:
        for ln in cfg:
            m = re.search(r"(?:source|destination)-prefix-list (\S+)$", ln)
            if m and not any(x.startswith(f"set policy-options prefix-list {m.group(1)} ") for x in cfg):
                return f"error: prefix-list {m.group(1)} referenced in a firewall filter is not defined"
        return None


class JunosModel(Model):
    """One CLI session."""

    host = "user@srx"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.mode = "op"
        self.kind = "shared"            # shared | exclusive | private
        self.private: list[str] = []    # the private candidate (configure private)
        self.private_base: list[str] = []

    @property
    def cand(self) -> list[str]:
        return self.private if self.kind == "private" else self.state.candidate

    @cand.setter
    def cand(self, value: list[str]) -> None:
        if self.kind == "private":
            self.private = value
        else:
            self.state.candidate = value

    def _locked_out(self) -> str | None:
        st: JunosState = self.state
        if st.exclusive and self.kind != "exclusive":
            return f"error: configuration database locked by:\n  {st.exclusive}\n      exclusive [edit]"
        return None

    def greeting(self) -> str:
        return "--- JUNOS 21.4R3.15 built 2022-10-12 00:00:00 UTC\n"

    def prompt(self) -> str:
        if self.mode == "confirm-exit":
            return "Exit with uncommitted changes? [yes,no] (yes) "
        return f"\n[edit]\n{self.host}# " if self.mode == "config" else f"{self.host}> "

    def reject(self, line: str) -> str:
        if line.strip().startswith("commit"):
            return ("error: commit failed: (statements constraint check failed)\n"
                    "error: configuration check-out failed")
        return " " * (len(self.host) + 2) + "^\nunknown command."

    def handle(self, line: str) -> str:
        cmd = " ".join(line.split())
        if self.mode == "confirm-exit":
            if cmd in ("yes", ""):
                self.state.candidate = list(self.state.committed)
                self._leave()
                return "Exiting configuration mode"
            self.mode = "config"
            return ""
        if not cmd:
            return ""
        return self._config(cmd, line) if self.mode == "config" else self._op(cmd, line)

    def _op(self, cmd: str, line: str) -> str:
        st: JunosState = self.state
        replies = {"set cli screen-width 511": "Screen width set to 511",
                   "set cli complete-on-space off": "Disabling complete-on-space",
                   "set cli screen-length 0": "Screen length set to 0"}
        if cmd in replies:
            return replies[cmd]
        m = re.fullmatch(r"show configuration (.+?) \| display set", cmd)
        if m:
            return "\n".join(ln for ln in st.committed if ln.startswith(f"set {m.group(1)} "))
        if cmd == "show interfaces terse":
            return "Interface               Admin Link Proto    Local                 Remote\n" + "\n".join(
                f"ge-0/0/{i}.0              up    up   inet     {a}" for i, a in enumerate(st.addresses.values()))
        m = re.fullmatch(r"(clear|show) security flow session (source|destination)-prefix (\S+)( summary)?", cmd)
        if m:
            # Junos OS "clear security flow session" / "show security flow session ... summary" (SRX)
            side = {"source": "src", "destination": "dst"}[m.group(2)]
            try:
                flows = st.sessions.matching(**{side: (m.group(3), None)})
            except ValueError:
                return self.reject(line)
            if m.group(1) == "clear":
                return f"{st.sessions.remove(flows)} sessions cleared"
            return (f"Valid sessions: {len(flows)}\nPending sessions: 0\nInvalidated sessions: 0\n"
                    f"Sessions in other states: 0\nTotal sessions: {len(flows)}")
        if cmd == "show system commit":
            head = "0   2024-05-06 10:00:00 UTC by user via cli"
            if st.pending_confirm:
                head += f" commit confirmed, rollback in {st.pending_confirm}mins"
            return head + "\n1   2024-05-01 09:00:00 UTC by root via cli"
        m = re.fullmatch(r"(?:configure|edit)(?: (exclusive|private))?", cmd)
        if m:
            kind = m.group(1) or "shared"
            if kind in ("exclusive", "private") and st.exclusive:
                return f"error: configuration database locked by:\n  {st.exclusive}\n      exclusive [edit]"
            if kind == "private" and st.candidate != st.committed:
                return f"error: shared configuration database modified\n{st.users_editing()}"
            st.config_entries += 1
            self.kind, self.mode = kind, "config"
            if kind == "exclusive":
                st.exclusive = f"{self.sim.username} terminal pts/0 (pid 5150) on since 2024-05-06 10:00:00 UTC"
            if kind == "private":
                self.private, self.private_base = list(st.committed), list(st.committed)
                return ("warning: uncommitted changes will be discarded on exit\nEntering configuration mode")
            return "Entering configuration mode"
        if cmd in ("exit", "quit"):
            self.closed = True
            return ""
        return self.reject(line)

    def _leave(self) -> None:
        st: JunosState = self.state
        if self.kind == "exclusive":
            st.exclusive = None
            if st.candidate != st.committed:  # exclusive: uncommitted changes are discarded on exit
                st.candidate = list(st.committed)
        self.kind, self.mode, self.private = "shared", "op", []

    def _config(self, cmd: str, line: str) -> str:
        st: JunosState = self.state
        if cmd in ("exit configuration-mode", "exit", "quit"):
            if self.kind == "private":
                self._leave()
                return "Exiting configuration mode"
            if self.cand != st.committed:
                self.mode = "confirm-exit"
                return "The configuration has been changed but not committed"
            self._leave()
            return "Exiting configuration mode"
        m = re.fullmatch(r"commit(?: confirmed (\d+))?", cmd)
        if m:
            locked = self._locked_out()
            if locked:
                return locked
            if self.kind == "private":
                if st.candidate != st.committed:
                    return f"error: shared configuration database modified\n{st.users_editing()}"
                mine_add = [ln for ln in self.private if ln not in self.private_base]
                mine_del = [ln for ln in self.private_base if ln not in self.private]
                if st.committed == self.private_base:   # nobody committed meanwhile: the private copy, as is
                    merged = list(self.private)
                else:                                    # merge our changes into what others committed
                    merged = [ln for ln in st.committed if ln not in mine_del] + mine_add
                problem = st.check(merged)
                if problem:
                    return f"{problem}\nerror: configuration check-out failed"
                st.committed = list(merged)
                st.candidate = list(merged)
                self.private, self.private_base = list(merged), list(merged)
            else:
                problem = st.check(st.candidate)
                if problem:
                    return f"{problem}\nerror: configuration check-out failed"
                st.committed = list(st.candidate)
            if m.group(1):
                st.pending_confirm = int(m.group(1))
                st.confirmed_commits += 1
                return (f"configuration check succeeds\ncommit confirmed will be automatically rolled back in "
                        f"{m.group(1)} minutes unless confirmed\ncommit complete\n\n# commit confirmed will be "
                        f"rolled back in {m.group(1)} minutes")
            st.pending_confirm = None
            st.saves += 1
            return "commit complete"
        if cmd == "rollback 0":
            if self.kind == "private":
                self.private = list(self.private_base)
            else:
                st.candidate = list(st.committed)
            return "load complete"
        locked = self._locked_out()
        if locked and re.match(r"(set|delete|insert) ", cmd):
            return locked
        m = re.fullmatch(r"set (policy-options prefix-list \S+ (\S+)|" + r"firewall family inet filter \S+ term \S+ "
                         r"(?:from (?:source|destination)-prefix-list \S+|then (?:discard|accept|reject)))", cmd)
        if m:
            if m.group(2):
                try:
                    canon(m.group(2))
                except ValueError:
                    return f"error: invalid prefix: {m.group(2)}\nsyntax error."
            if cmd not in self.cand:
                self.cand.append(cmd)
            return ""
        m = re.fullmatch(r"delete (.+)", cmd)
        if m:
            stmt = "set " + m.group(1)
            before = len(self.cand)
            self.cand = [ln for ln in self.cand if ln != stmt and not ln.startswith(stmt + " ")]
            return "" if len(self.cand) < before else "warning: statement not found"
        m = re.fullmatch(r"insert (firewall family inet filter \S+) term (\S+) (before|after) term (\S+)", cmd)
        if m:
            prefix = f"set {m.group(1)} term "
            mine = [ln for ln in self.cand if ln.startswith(prefix + m.group(2) + " ")]
            rest = [ln for ln in self.cand if ln not in mine]
            at = [i for i, ln in enumerate(rest) if ln.startswith(prefix + m.group(4) + " ")]
            if not mine or not at:
                return "error: statement not found"
            anchor = at[0] if m.group(3) == "before" else at[-1] + 1
            self.cand = rest[:anchor] + mine + rest[anchor:]
            return ""
        return " " * (len(self.host) + 2) + "^\nsyntax error."

