"""The isolate preview (issue 16: its size drove the daemon's CPU per rehearsed alert): each shared check is
defined once in the prelude every command starts with, the preview shows that prelude as sent, and memoized
previews equal fresh ones. The shell functions behave exactly like the inline text they replace (run by sh)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from connectors.ssh_linux import SshLinuxConnector, deadman, hostfuncs, preview
from connectors.ssh_linux.privilege import ENV, prelude
from connectors.ssh_linux.validation import parse_isolate_args
from connectors.types import ConnectorContext, Target

CTX = ConnectorContext(management_addresses=("10.99.0.10",))


def _preview(address: str = "10.98.0.2", options: dict[str, object] | None = None,
             args: dict[str, object] | None = None) -> list[str]:
    target = Target("h1", "host", address, "ssh_linux", options=options or {})
    return SshLinuxConnector().preview(target, "isolate", args or {}, CTX)


@pytest.mark.parametrize("args", [{}, {"survive_reboot": True}, {"cut_sessions": False}])
def test_each_shared_check_is_sent_once_per_command_and_shown_once(args: dict[str, object]) -> None:
    """The dead-man check was inlined ~7 times and the state read 3 times per preview (17.6 KB): each is now
    one function in the prelude, shown once; the commands call it."""
    text = "\n".join(_preview(args=args))
    assert text.count(deadman.LIVE_BODY) == 1
    assert text.count(hostfuncs.STATE_SCRIPT) == 1
    assert text.count("ca_live;") >= 4 and text.count(hostfuncs.READ_STATE) >= 3


def test_preview_size_bound() -> None:
    """The default isolate preview of one host stays under 13,000 characters (it was 17,600; 12,000 until it
    also showed the boot-unit removal sent when an earlier isolation left one, ~1,000 characters)."""
    assert len("\n".join(_preview())) < 13_000


@pytest.mark.parametrize("options", [{}, {"sudo": True}, {"doas": True}])
def test_prelude_shown_is_the_prelude_sent(options: dict[str, object]) -> None:
    """Every command the session sends starts with ENV + prelude (connectors/ssh_linux/session.py); the preview
    shows exactly that text (the environment line was missing before)."""
    from connectors.ssh_linux.privilege import parse_privilege
    lines = _preview(options=options)
    assert lines[0] == "ssh 10.98.0.2:22: every command below is sent over this connection"
    assert lines[1] == f"every command starts with: {ENV}{prelude(parse_privilege(options))}"


def test_session_sends_env_and_prelude() -> None:
    """The session's prefix is the one the preview shows (read from the session's own construction)."""
    source = (Path(__file__).resolve().parents[2] / "connectors" / "ssh_linux" / "session.py").read_text()
    assert "self._prelude = ENV + prelude(self.privilege)" in source
    assert "chan.exec_command(self._prelude + cmd)" in source


def test_memoized_preview_equals_fresh_and_names_its_host() -> None:
    """Two hosts with the same inputs share every line but the first (the host); a memoized render equals a
    fresh one; different inputs render differently."""
    a, b = _preview("10.98.0.2"), _preview("10.98.0.3")
    assert a[0] != b[0] and "10.98.0.3:22" in b[0] and a[1:] == b[1:]
    cached = _preview("10.98.0.4", args={"confirm_seconds": 45})
    preview._commands.cache_clear()
    fresh = _preview("10.98.0.4", args={"confirm_seconds": 45})
    assert cached == fresh and "sleep 45;" in "\n".join(fresh) and "sleep 45;" not in "\n".join(a)
    assert _preview(options={"sudo": True})[1:] != a[1:]


def _sh(script: str, state_dir: Path) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SSH_CONNECTION": "10.99.0.10 5 10.98.0.2 22"}
    return subprocess.run(["sh", "-c", f'priv() {{ "$@"; }}; D={state_dir}; {script}'], capture_output=True,
                          text=True, env=env, check=True, timeout=30).stdout


def test_functions_behave_like_the_inline_text(tmp_path: Path) -> None:
    """Run by sh against a live fake timer, a stale record and no record: ``ca_live`` sets exactly what the
    inline check set, and ``ca_state`` prints what the inline state script printed."""
    token = "ab" * 16
    timer = subprocess.Popen(["sh", "-c", f": {deadman.MARKER} {token}; sleep 30"])
    try:
        show = 'echo "p=$p t=$t o=$o s=$s u=$u"'
        for record in (f"{timer.pid} {token} h:1 100 130", f"{os.getpid()} {token} h:1 100 130", None):
            if record is None:
                (tmp_path / "deadman").unlink(missing_ok=True)
            else:
                (tmp_path / "deadman").write_text(record + "\n")
            inline = _sh(deadman.LIVE_BODY + show, tmp_path)
            assert _sh(hostfuncs.DEFINITIONS + "ca_live; " + show, tmp_path) == inline
            if record and record.startswith(str(timer.pid)):
                assert f"p={timer.pid} t={token}" in inline
            state_inline = _sh(hostfuncs.STATE_SCRIPT.replace("ca_live; ", deadman.LIVE_BODY), tmp_path)
            state_fn = _sh(hostfuncs.DEFINITIONS + hostfuncs.READ_STATE, tmp_path)
            strip = lambda out: [ln for ln in out.splitlines() if not ln.startswith("DEADMAN_NOW=")]  # noqa: E731
            assert strip(state_fn) == strip(state_inline) and "@@SSH 10.99.0.10" in state_fn
    finally:
        timer.kill()
        timer.wait()


def test_parse_isolate_args_unchanged_by_preview_memo() -> None:
    """The memo key is the parsed arguments (frozen, hashable): equal inputs give equal keys."""
    one = parse_isolate_args({}, ["10.99.0.10"])
    assert one == parse_isolate_args({}, ["10.99.0.10"]) and hash(one) == hash(parse_isolate_args({}, ["10.99.0.10"]))


def test_lock_function_takes_the_lock_and_its_exit_ends_the_command(tmp_path: Path) -> None:
    """``ca_lock`` as inline: creates the state directory, holds fd 9 on ``$D/lock`` for the rest of the command;
    when it cannot, its ``exit 91`` ends the whole command (nothing after it runs)."""
    after = 'echo "after $(readlink /proc/$$/fd/9)"'
    for state_dir in (tmp_path / "d", Path("/proc/no-such-dir/x")):
        runs = []
        for script in (deadman.LOCK_BODY + after, hostfuncs.DEFINITIONS + "ca_lock; " + after):
            res = subprocess.run(["sh", "-c", f"D={state_dir}; {script}"], capture_output=True, text=True,
                                 timeout=60, check=False)
            runs.append((res.returncode, res.stdout, res.stderr))
        assert runs[0] == runs[1]
        assert runs[0][0] == (0 if state_dir.parent == tmp_path else deadman.LOCK_EXIT)
    assert (tmp_path / "d" / "lock").exists()
