"""Dry-run == sent for isolation on real hosts (issue 16 shrank the preview with prelude functions, so prove it):
every command an isolation sends — snapshot, arm and load, cut, fresh-connection confirm, verify — appears in the
preview verbatim (the action's token shown as the placeholder), stdin included, and the prefix every command
starts with is the one the preview shows. nft (victim) and iptables (legacy) hosts, root and sudo logins."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connectors.ssh_linux import preview as preview_mod
from connectors.ssh_linux.session import SshSession
from tests.integration.ssh_linux.helpers import Agent, record_sent
from tests.integration.ssh_linux.test_sudo import SUDO_ACCOUNT, TIMER_DIR

pytestmark = pytest.mark.root

# The one command the preview describes instead of showing: conntrack -D per tracked flow found at run time.
_DESCRIBED = ("priv conntrack -D ",)


@pytest.mark.parametrize(("host", "user", "options"), [("victim", "root", {}), ("legacy", "root", {}),
                                                        ("sudohost", SUDO_ACCOUNT, {"sudo": True})])
def test_every_command_sent_is_in_the_preview(agent: Agent, monkeypatch: pytest.MonkeyPatch, host: str, user: str,
                                              options: dict[str, Any]) -> None:
    sent: list[tuple[str, str | None, str]] = []
    real_run = SshSession.run

    def recording(self: SshSession, cmd: str, input: str | None = None, *a: Any, **k: Any) -> Any:
        sent.append((cmd, input, self._prelude))
        return real_run(self, cmd, input, *a, **k)
    monkeypatch.setattr(SshSession, "run", recording)
    args = {"confirm_seconds": 60}
    with agent.open(host, user=user, options=options) as s:
        shown = agent.conn.preview(s.target, "isolate", args, agent.ctx)
        snap, result, check = agent.isolate(s, args)
        assert result.changed and check.in_effect, (result, check)
        isolation = list(sent)
        agent.release(s, snap)
    if host == "sudohost":  # as test_sudo's fixture: never leave the account's timer behind
        stop = f'read -r p _ < {TIMER_DIR}/deadman && kill -15 -"$p"; rm -f {TIMER_DIR}/deadman; true'
        agent.lab.exec(host, ["sh", "-c", stop], check=False)
    text = "\n".join(shown)
    tokens = set(re.findall(r"containment-deadman ([0-9a-f]{32})", "".join(c for c, _, _ in isolation)))
    assert len(tokens) == 1, tokens
    token = tokens.pop()
    assert {p for _, _, p in isolation} == {shown[1].removeprefix("every command starts with: ")}
    checked = 0
    for raw, stdin, _ in isolation:
        cmd = raw.replace(token, preview_mod.TOKEN_PLACEHOLDER)
        if cmd.startswith(_DESCRIBED):
            continue
        checked += 1
        assert cmd in text, f"sent but not shown: {cmd[:300]}"
        if stdin is not None:
            assert f"{cmd} <<'EOF'\n{stdin}EOF" in text, f"stdin of {cmd[:80]} not shown"
    assert checked >= 4  # read state, arm + load, cut + read back, confirm + read back (fresh connection)


def test_removing_a_boot_unit_left_by_an_earlier_isolation_is_in_the_preview(agent: Agent,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """An isolation with survive_reboot left the boot unit; isolating again without it removes the unit (once
    confirmed) — a command the preview did not show before."""
    with agent.open("victim") as s:
        snap, result, check = agent.isolate(s, {"survive_reboot": True})
        assert result.details["survives_reboot"]["installed"] == "now" and check.in_effect
        sent = record_sent(monkeypatch)
        shown = "\n".join(agent.conn.preview(s.target, "isolate", {}, agent.ctx))
        again = agent.conn.apply(s, "isolate", {}, agent.conn.snapshot(s, "isolate", {}))
        assert again.details.get("boot_unit_removed"), again
        assert sent and all(cmd in shown for cmd in sent), [c[:120] for c in sent if c not in shown]
        monkeypatch.undo()
        agent.release(s, snap)
