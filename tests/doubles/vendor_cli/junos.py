"""Junos console model: ``user@srx>`` operational mode, ``configure`` → ``[edit]`` / ``user@srx#``. The
configuration is a list of ``set`` statements (candidate and committed); ``insert ... before`` reorders filter
terms; ``commit confirmed N`` records a pending rollback that ``show system commit`` reports until a plain
``commit`` confirms it; ``rollback 0`` drops candidate changes; leaving with uncommitted changes asks first."""

from __future__ import annotations

import re
from typing import Any

from tests.doubles.vendor_cli.base import PLACEHOLDER, Model, StateBase, canon

__all__ = ["JunosModel", "JunosState"]

_FILTER = "firewall family inet filter EDGE-IN"


class JunosState(StateBase):
    """``candidate``/``committed`` set statements; ``pending_confirm`` minutes of an unconfirmed commit."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = [f"set {_FILTER} term allow-ssh from protocol tcp",
                          f"set {_FILTER} term allow-ssh then accept",
                          f"set {_FILTER} term default then accept",
                          "set interfaces ge-0/0/0 unit 0 family inet filter input EDGE-IN"]
        self.candidate = list(self.committed)
        self.pending_confirm: int | None = None
        self.confirmed_commits = 0

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

    def check(self, cfg: list[str]) -> str | None:
        for ln in cfg:
            m = re.search(r"source-prefix-list (\S+)$", ln)
            if m and not any(x.startswith(f"set policy-options prefix-list {m.group(1)} ") for x in cfg):
                return f"error: prefix-list {m.group(1)} referenced in a firewall filter is not defined"
        return None


class JunosModel(Model):
    """One CLI session."""

    host = "user@srx"

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self.mode = "op"

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
                self.mode = "op"
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
        if cmd == "show system commit":
            head = "0   2024-05-06 10:00:00 UTC by user via cli"
            if st.pending_confirm:
                head += f" commit confirmed, rollback in {st.pending_confirm}mins"
            return head + "\n1   2024-05-01 09:00:00 UTC by root via cli"
        if cmd in ("configure", "edit"):
            st.config_entries += 1
            self.mode = "config"
            return "Entering configuration mode"
        if cmd in ("exit", "quit"):
            self.closed = True
            return ""
        return self.reject(line)

    def _config(self, cmd: str, line: str) -> str:
        st: JunosState = self.state
        if cmd in ("exit configuration-mode", "exit", "quit"):
            if st.candidate != st.committed:
                self.mode = "confirm-exit"
                return "The configuration has been changed but not committed"
            self.mode = "op"
            return "Exiting configuration mode"
        m = re.fullmatch(r"commit(?: confirmed (\d+))?", cmd)
        if m:
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
            st.candidate = list(st.committed)
            return "load complete"
        m = re.fullmatch(r"set (policy-options prefix-list \S+ (\S+)|" + r"firewall family inet filter \S+ term \S+ "
                         r"(?:from source-prefix-list \S+|then (?:discard|accept|reject)))", cmd)
        if m:
            if m.group(2):
                try:
                    canon(m.group(2))
                except ValueError:
                    return f"error: invalid prefix: {m.group(2)}\nsyntax error."
            if cmd not in st.candidate:
                st.candidate.append(cmd)
            return ""
        m = re.fullmatch(r"delete (.+)", cmd)
        if m:
            stmt = "set " + m.group(1)
            before = len(st.candidate)
            st.candidate = [ln for ln in st.candidate if ln != stmt and not ln.startswith(stmt + " ")]
            return "" if len(st.candidate) < before else "warning: statement not found"
        m = re.fullmatch(r"insert (firewall family inet filter \S+) term (\S+) before term (\S+)", cmd)
        if m:
            prefix = f"set {m.group(1)} term "
            mine = [ln for ln in st.candidate if ln.startswith(prefix + m.group(2) + " ")]
            rest = [ln for ln in st.candidate if ln not in mine]
            anchor = next((i for i, ln in enumerate(rest) if ln.startswith(prefix + m.group(3) + " ")), None)
            if not mine or anchor is None:
                return "error: statement not found"
            st.candidate = rest[:anchor] + mine + rest[anchor:]
            return ""
        return " " * (len(self.host) + 2) + "^\nsyntax error."
