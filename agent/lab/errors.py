"""Errors raised by the practice lab.

Why a separate module: the CLI and the pytest fixtures catch these without importing the whole lab.

    LabError                      the lab cannot be built, used or torn down (also: not root)
     └── LabCommandError          a command run inside a lab host failed (also a CalledProcessError)
"""

from __future__ import annotations

import subprocess

__all__ = ["NEEDS_ROOT", "LabCommandError", "LabError"]

NEEDS_ROOT = "the practice lab needs root (network namespaces): run with sudo"


class LabError(Exception):
    """The practice lab cannot do what was asked; the message says why and what to do."""


class LabCommandError(LabError, subprocess.CalledProcessError):
    """A command run with ``Lab.exec`` exited non-zero; carries the host and the captured output."""

    def __init__(self, host: str, result: subprocess.CompletedProcess[str]) -> None:
        subprocess.CalledProcessError.__init__(self, result.returncode, result.args, result.stdout, result.stderr)
        self.host = host
        self.result = result

    def __str__(self) -> str:
        err = (self.stderr or "").strip()
        tail = f": {err[-500:]}" if err else ""
        return f"on lab host {self.host!r}: {self.cmd!r} exited {self.returncode}{tail}"
