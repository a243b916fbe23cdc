"""No import cycles between the modules the issue found tangled, not even through imports hidden in functions.

Every ``import`` statement counts (module level or inside a function), except under ``if TYPE_CHECKING:`` (types
only) and under ``if __name__ == "__main__":`` (an entry point chooses its callees; nothing imports it).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[2] / "agent"


def _module(path: Path) -> str:
    parts = path.relative_to(AGENT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _skipped(node: ast.If) -> bool:
    test = ast.unparse(node.test)
    return test in ("TYPE_CHECKING", "typing.TYPE_CHECKING") or "__name__ == '__main__'" in test


def imports_of(path: Path) -> set[str]:
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _skipped(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return {name for name in out if name.startswith("agent")}


GRAPH = {_module(p): imports_of(p) for p in AGENT.rglob("*.py")}


def reaches(start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        mod = todo.pop()
        if mod == goal:
            return True
        if mod in seen:
            continue
        seen.add(mod)
        todo += [m for m in GRAPH.get(mod, ()) if m in GRAPH]
    return False


@pytest.mark.parametrize(("a", "b"), [("agent.cli", "agent.warm"),
                                      ("agent.intake.dispatcher", "agent.intake.service")])
def test_no_cycle(a: str, b: str) -> None:
    assert not (reaches(a, b) and reaches(b, a)), f"{a} and {b} import each other"


def test_the_intake_does_not_import_the_composition_root() -> None:
    """agent.app builds the intake; the intake takes what it needs as arguments."""
    offenders = [m for m, deps in GRAPH.items() if m.startswith("agent.intake") and "agent.app" in deps]
    assert offenders == []
