"""Waiting for a command's exit status costs no CPU (issue 19, fan-out CPU per host). paramiko sets a channel's
pipe for good once the peer's EOF arrives (paramiko channel.py ``_handle_eof``: ``self._pipe.set_forever()``), so
``select`` on the channel returns at once from then on; RFC 4254 §6.10 sends ``exit-status`` as its own message,
and OpenSSH sends it only once it has reaped the command — after the EOF of its output when the output closes
first (a background process keeps running, a shell that closed its descriptors). Polling ``select`` until then
spins a pool thread at full speed and holds the GIL from the others. Real sshd (victim)."""

from __future__ import annotations

import time

import pytest

from tests.integration.ssh_linux.helpers import Agent

pytestmark = pytest.mark.root


def test_exit_status_after_eof_is_awaited_without_spinning(agent: Agent) -> None:
    with agent.open("victim") as s:
        start, cpu = time.monotonic(), time.thread_time()
        rc, out, _ = s.run("echo ready; exec >&- 2>&-; sleep 0.5; exit 3")
        wall, used = time.monotonic() - start, time.thread_time() - cpu
    assert (rc, out) == (3, "ready\n")
    assert wall >= 0.5
    assert used < 0.1, f"{used:.3f} CPU-s waiting {wall:.2f} s for the exit status"
