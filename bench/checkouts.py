"""Checkouts a bench measures side by side: this one and a baseline (the code before a change), same interpreter.

Why: speed targets are ratios against a baseline measured in the same run on the same machine; an older checkout
is run by this checkout's interpreter with its own sources first on ``PYTHONPATH`` (and as the working directory
of anything started with ``python -m``), so both meet the same libraries and the same load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["REPO", "Tree", "baseline_tree", "this_tree"]

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Tree:
    """A checkout whose daemon is measured: its runbooks, how its intake wants alerts signed, its import path."""

    root: Path
    label: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def runbooks(self) -> Path:
        shipped = self.root / "agent" / "data" / "runbooks"  # package data since 21aee5c; runbooks/ before
        return shipped if shipped.is_dir() else self.root / "runbooks"

    @property
    def stamped(self) -> bool:
        """Replay protection (signed timestamp + nonce) exists in this checkout; older ones sign the body only."""
        auth = self.root / "agent" / "intake" / "auth.py"
        return auth.is_file() and "x-agent-timestamp" in auth.read_text().lower()


def this_tree() -> Tree:
    return Tree(REPO, "new")


def baseline_tree(root: Path) -> Tree:
    """Another checkout run by this checkout's interpreter: its sources first on the import path (the
    daemon's front and warm server are started with ``sys.executable -m`` and inherit it)."""
    root = root.resolve()
    if not (root / "agent" / "daemon.py").is_file():
        raise SystemExit(f"--baseline {root}: not a checkout of this repository (no agent/daemon.py)")
    return Tree(root, "old", {"PYTHONPATH": str(root)})
