"""``agent init DIR``: write an annotated configuration folder to start from (agent.yaml, inventory, rules).

Why a command and not "copy config/ from the repository": an installed tool has no repository. The examples ship
inside the package (:mod:`agent.paths`), so the files written here are the ones this version of the agent reads,
with every field explained. Existing files are never overwritten unless ``--force`` says so: an operator's
inventory is worth more than an example.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from agent import exitcodes, paths
from agent.output import err

__all__ = ["EXAMPLE_FILES", "run_init"]

EXAMPLE_FILES = ("agent.yaml", "inventory.yaml", "rules.yaml")


def run_init(args: argparse.Namespace) -> int:
    target = Path(args.directory).expanduser()
    if target.exists() and not target.is_dir():
        err(f"init: {target} exists and is not a folder")
        return exitcodes.USAGE
    planned = [target / name for name in EXAMPLE_FILES]
    if args.runbooks:
        planned += [target / "runbooks" / p.name for p in sorted(paths.shipped_runbooks().glob("*.yaml"))]
    existing = [str(p) for p in planned if p.exists()]
    if existing and not args.force:
        err(f"init: not overwriting {', '.join(existing)} (use --force to replace them)")
        return exitcodes.USAGE
    target.mkdir(parents=True, exist_ok=True, mode=0o750)
    examples = paths.shipped("config")
    for name in EXAMPLE_FILES:
        text = (examples / name).read_text(encoding="utf-8")
        if name == "agent.yaml" and args.runbooks:
            text = text.replace("# runbooks: runbooks", "runbooks: runbooks", 1)
        (target / name).write_text(text, encoding="utf-8")
    if args.runbooks:
        (target / "runbooks").mkdir(exist_ok=True)
        for book in sorted(paths.shipped_runbooks().glob("*.yaml")):
            shutil.copyfile(book, target / "runbooks" / book.name)
    config = target / "agent.yaml"
    print(f"wrote {', '.join(str(p) for p in planned)}")
    print(f"next: describe your hosts in {target / 'inventory.yaml'}, then: agent check-config -c {config}")
    print(f"journal and evidence go to {paths.state_dir()}, the audit log to {paths.audit_dir()} "
          "(change them in agent.yaml)")
    return exitcodes.DONE
