"""Human and JSON output for the CLI. Plain text tables: fast to import, readable over SSH and in tickets."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from agent.runctx import colour_enabled

__all__ = ["color", "emit_json", "err", "table"]

_CODES = {"green": "32", "red": "31", "yellow": "33", "bold": "1", "dim": "2", "cyan": "36"}


def color(text: str, name: str) -> str:
    """``text`` in colour ``name`` when this run's standard output is a terminal (decided per call, not import)."""
    return f"\033[{_CODES[name]}m{text}\033[0m" if colour_enabled() else text


def state_color(state: str) -> str:
    return color(state, {"done": "green", "failed": "red", "skipped": "yellow", "open": "yellow",
                         "contained": "red", "released": "green", "pending": "yellow", "partial": "yellow",
                         "in_doubt": "yellow"}.get(state, "bold"))


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(_visible(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        text = "  ".join(c + " " * (widths[i] - _visible(c)) for i, c in enumerate(row)).rstrip()
        lines.append(color(text, "bold") if n == 0 else text)
    return "\n".join(lines)


def _visible(text: str) -> int:
    import re
    return len(re.sub(r"\033\[[0-9;]*m", "", text))


def emit_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")


def err(message: str) -> None:
    sys.stderr.write(color("error: ", "red") + message + "\n")
