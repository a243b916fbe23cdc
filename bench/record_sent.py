"""Run the agent's CLI with every SSH login, command and close it makes written to a JSON-lines file, in order —
the agent's own record of what it sent, which ``bench/fanout_vs_ssh.py`` replays with OpenSSH so that its
"same work" baseline cannot drift from what the agent does.

    python bench/record_sent.py OUT.jsonl contain --tag fleet --yes ...

Each line: ``{"event": "open"|"run"|"close", "conn": n, "address": ..., "port": ..., "user": ...}`` and for
``run`` the exact text the channel executed (the prelude every command starts with included) and its stdin. It
wraps :class:`connectors.ssh_linux.session.SshSession` — the one place a command reaches the wire
(tests/integration/ssh_linux/test_preview_sent.py records the same way to prove preview == sent).
"""

from __future__ import annotations

import itertools
import json
import sys
import threading
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def install(out: IO[str]) -> None:
    """Wrap SshSession's constructor, ``run`` and ``close`` so that each writes (and flushes: the CLI may leave
    without the interpreter's teardown) one line to ``out``."""
    from connectors.ssh_linux.session import SshSession

    lock, ids = threading.Lock(), itertools.count(1)
    real_init, real_run, real_close = SshSession.__init__, SshSession.run, SshSession.close

    def write(session: SshSession, event: str, **extra: Any) -> None:
        line = {"event": event, "conn": session.__dict__["_bench_conn"], "address": session.target.address,
                "port": session.port, "user": session.creds.username, **extra}
        with lock:
            out.write(json.dumps(line) + "\n")
            out.flush()

    def init(self: SshSession, *a: Any, **k: Any) -> None:
        real_init(self, *a, **k)
        self.__dict__["_bench_conn"] = next(ids)
        write(self, "open")

    def run(self: SshSession, cmd: str, input: str | None = None, *a: Any, **k: Any) -> Any:
        write(self, "run", command=self._prelude + cmd, stdin=input)
        return real_run(self, cmd, input, *a, **k)

    def close(self: SshSession) -> None:
        if not self.__dict__.get("_bench_closed"):
            self.__dict__["_bench_closed"] = True
            write(self, "close")
        real_close(self)

    SshSession.__init__ = init  # type: ignore[method-assign]
    SshSession.run = run  # type: ignore[method-assign]
    SshSession.close = close  # type: ignore[method-assign]


def main() -> int:
    from agent.cli import main as cli

    out = open(sys.argv[1], "a", encoding="utf-8")  # noqa: SIM115 - flushed per line, the CLI may _exit
    install(out)
    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
