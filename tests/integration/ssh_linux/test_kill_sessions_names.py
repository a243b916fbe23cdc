"""kill_sessions takes any name the host's NSS can know (issue 17, "escape, don't forbid"): ``o'brien`` reaches the
real sshd lab host inside single quotes (shlex.quote), is resolved to its UID there and its processes die; only what
can never be a name (empty, control characters, a NUL) is refused before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import InvalidInput
from connectors.ssh_linux.validation import parse_user
from connectors.types import Snapshot
from tests.integration.ssh_linux.helpers import Agent

pytestmark = pytest.mark.root

NAME = "o'brien"


def test_quoted_name_is_killed_on_the_real_host(agent: Agent, tmp_path: Path) -> None:
    lab, uid = agent.lab, 47912
    passwd = tmp_path / "passwd"
    passwd.write_text(Path("/etc/passwd").read_text() + f"{NAME}:x:{uid}:{uid}::/nonexistent:/bin/sh\n")
    lab.exec("victim", ["mount", "--bind", str(passwd), "/etc/passwd"])   # only in victim's mount namespace
    try:
        sleeper = f"setpriv --reuid={uid} --regid={uid} --clear-groups setsid sleep 300 </dev/null >/dev/null 2>&1 &"
        lab.exec("victim", ["sh", "-c", sleeper])
        target = agent.target("victim")
        agent.conn.validate(target, "kill_sessions", {"user": NAME})
        assert any(NAME in line for line in agent.conn.preview(target, "kill_sessions", {"user": NAME}, agent.ctx))
        with agent.open("victim") as s:
            assert not agent.conn.verify(s, "kill_sessions", {"user": NAME}).in_effect
            result = agent.conn.apply(s, "kill_sessions", {"user": NAME}, Snapshot())
            assert result.changed and result.details["uid"] == uid and result.details["killed_count"] >= 1
            assert agent.conn.verify(s, "kill_sessions", {"user": NAME}).in_effect
        ps = lab.exec("victim", ["ps", "-o", "stat=", "-U", str(uid)], check=False).stdout
        assert all(stat.startswith("Z") for stat in ps.split()), ps   # killed (a zombie awaits its reaper)
    finally:
        lab.exec("victim", ["umount", "/etc/passwd"], check=False)


@pytest.mark.parametrize("name", ["a(b)c", "ünïcode", "LAB\\o'brien", "o'brien@lab.test", "x y", "-dash"])
def test_names_the_host_may_know_are_accepted(name: str) -> None:
    assert parse_user(name)


@pytest.mark.parametrize("name", ["", "a\nb", "a\x00b", "tab\there", ".", "..", "x" * 300])
def test_what_cannot_be_a_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="user"):
        parse_user(name)
