"""The application layer names no connector: it reads what the registry's connectors declare.

Why a test: a connector installed through the ``agent.connectors`` entry point must be able to serve hosts,
devices or directories without an edit to the agent (docs/architecture.md, never 6). A string literal that
equals a connector name in ``agent/`` is how that silently breaks, so the code (not comments or docstrings)
is searched for one, token by token.
"""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

AGENT = Path(__file__).resolve().parents[2] / "agent"
CONNECTORS = {"ssh_linux", "winrm_windows", "active_directory", "firewall"}
# Folders that may name connectors: the practice lab builds their targets; migrations describe history.
EXEMPT_DIRS = ("lab", "migrations", "data")
# (file, literal) allowed, each with its reason. Keep this short.
ALLOWED = {
    ("extras.py", "firewall"): "the name of the pip extra [firewall], not the connector",
}


def _literals(path: Path) -> list[tuple[int, str]]:
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(tok.string)
        except (ValueError, SyntaxError):  # f-strings: their literal parts cannot name a whole connector
            continue
        if isinstance(value, str) and value in CONNECTORS:
            out.append((tok.start[0], value))
    return out


def test_no_connector_name_in_the_app_layer() -> None:
    found = []
    for path in sorted(AGENT.rglob("*.py")):
        rel = path.relative_to(AGENT)
        if rel.parts[0] in EXEMPT_DIRS:
            continue
        for line, value in _literals(path):
            if (str(rel), value) not in ALLOWED:
                found.append(f"agent/{rel}:{line}: {value!r}")
    assert not found, "connector names in the app layer (read the registry's declarations instead):\n" + "\n".join(
        found)


def test_the_search_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The token search sees a connector name in code and ignores it in comments and docstrings."""
    sample = tmp_path / "x.py"
    sample.write_text('"""Uses ssh_linux."""\n# firewall\nif row.connector == "firewall":\n    pass\n')
    assert _literals(sample) == [(3, "firewall")]


def test_the_brief_s_modules_are_clean() -> None:
    """The six modules the issue named are not on the allow-list at all."""
    named = {"inventory.py", "plan.py", "intake/limits.py", "intake/service.py", "commands/query.py",
             "commands/act.py"}
    assert not {f for f, _ in ALLOWED} & named
    for rel in named:
        assert _literals(AGENT / rel) == [], rel
