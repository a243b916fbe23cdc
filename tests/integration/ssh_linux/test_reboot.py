"""Isolation that survives a reboot (issue 14), on real lab hosts.

A reboot is :meth:`agent.lab.Lab.reboot`: every process of the host is killed (sshd, sessions, the dead-man
timer), the kernel's firewall state and tracked flows are lost, /run starts empty and /etc (the host's own overlay
layer, its "disk") is kept. Then :func:`boot` does what systemd would: for every unit this host has enabled in its
own /etc, it runs the unit's ``ExecStart=`` command line as written. The proof is always the probe matrix from
outside, before and after each "reboot".
"""

from __future__ import annotations

import shlex
import time
from typing import Any

import pytest

from agent.lab import Lab
from agent.lab.probe import wait_until
from agent.lab.topology import SUDO_ACCOUNT
from connectors.errors import Rejected
from connectors.ssh_linux import persist
from tests.integration.ssh_linux.helpers import Agent, rows, timers_in
from tests.integration.ssh_linux.test_deadman_lock import DELAY, crash_between_load_and_confirm

pytestmark = [pytest.mark.root, pytest.mark.slow]


def check(host: str) -> list[tuple[str, str, int]]:
    return [("attacker", host, 8080), ("peer", host, 8080), (host, "peer", 8080), ("mgmt", host, 22)]


def isolated(host: str) -> dict[str, str]:
    return {f"attacker->{host}:8080": "blocked", f"peer->{host}:8080": "blocked", f"{host}->peer:8080": "blocked",
            f"mgmt->{host}:22": "open"}


def open_(host: str) -> dict[str, str]:
    return dict.fromkeys(isolated(host), "open")


def boot(lab: Lab, host: str) -> list[str]:
    """Run what systemd runs at boot for the units enabled in this host's own /etc (what was written on the host,
    i.e. its overlay's upper layer; the machine's own units are not the lab host's): each ``ExecStart=`` line,
    split like systemd.service(5) does, as root. Returns the command lines run."""
    upper = lab.host_dir(host) / "etc" / "up" / "systemd" / "system"
    ran = []
    for link in sorted(upper.glob("*.wants/*")):
        if not link.is_symlink():
            continue
        text = lab.exec(host, ["cat", str(link).replace(str(lab.host_dir(host) / "etc" / "up"), "/etc")]).stdout
        for line in text.splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.split("=", 1)[1])
                lab.exec(host, argv)
                ran.append(line)
    return ran


def reboot_and_boot(lab: Lab, host: str) -> list[str]:
    lab.reboot(host)
    assert rows(lab, check(host)) == open_(host), "the reboot did not clear the kernel's firewall state"
    return boot(lab, host)


@pytest.mark.parametrize(("host", "via"), [("victim", "root"), ("legacy", "root"), ("sudohost", "sudo")])
def test_isolation_comes_back_after_a_reboot_and_release_leaves_it_open(agent: Agent, host: str, via: str) -> None:
    """nft host, iptables host (no nft) and a host whose only login is a sudo account (the boot unit is written
    with the documented sudoers rules)."""
    lab = agent.lab
    login: dict[str, Any] = {} if via == "root" else {"user": SUDO_ACCOUNT, "options": {via: True}}
    with agent.open(host, **login) as s:
        snap, result, ver = agent.isolate(s, {"survive_reboot": True, "confirm_seconds": DELAY})
    assert ver.in_effect and ver.observed["survives_reboot"] is True, ver
    assert result.details["survives_reboot"]["installed"] == "now", result.details
    assert "survives a reboot" in result.summary
    # lab hosts do not run systemd (their boot is :func:`boot`): the result says what that means on a real host
    assert any("only if the host boots with systemd" in w for w in result.warnings), result.warnings
    assert snap.data["boot_unit"]["paths"] == [persist.BOOT_SCRIPT, persist.UNIT, persist.WANTS]
    assert rows(lab, check(host)) == isolated(host)

    ran = reboot_and_boot(lab, host)
    assert ran == [f"ExecStart=/bin/sh {persist.BOOT_SCRIPT}"]
    assert rows(lab, check(host)) == isolated(host), "the isolation did not come back at boot"
    assert timers_in(lab, host) == []
    with agent.open(host, **login) as s:  # the agent reads the rebooted host as contained (and can still log in)
        ver = agent.conn.verify(s, "isolate", {"survive_reboot": True})
        assert ver.in_effect, ver
        released, after = agent.release(s, snap)
    assert released.changed and not after.in_effect, released
    assert released.details["boot_unit_removed"] == sorted([persist.BOOT_SCRIPT, persist.UNIT, persist.WANTS])
    assert rows(lab, check(host)) == open_(host)

    assert reboot_and_boot(lab, host) == [], "a boot unit is still enabled after release"
    assert rows(lab, check(host)) == open_(host)
    time.sleep(0.2)
    assert rows(lab, check(host)) == open_(host)


def test_an_isolation_never_confirmed_does_not_come_back_after_a_reboot(agent: Agent) -> None:
    """The agent died between loading and confirming: nothing is persisted before the confirmation (the
    dead-man timer dies with the reboot, so a persisted but unconfirmed isolation could lock the agent out for
    good). After the reboot the host is open and no timer is left to fire into a later containment."""
    lab = agent.lab
    crash_between_load_and_confirm(lab, "before-confirm", {"survive_reboot": True})
    assert rows(lab, check("victim")) == isolated("victim")
    assert reboot_and_boot(lab, "victim") == []
    assert rows(lab, check("victim")) == open_("victim")
    assert timers_in(lab, "victim") == []
    with agent.open("victim") as s:  # a new containment after the reboot is not disturbed by the old run
        _, _, ver = agent.isolate(s, {"survive_reboot": True, "confirm_seconds": DELAY})
        assert ver.in_effect, ver
    time.sleep(DELAY + 1)
    assert rows(lab, check("victim")) == isolated("victim")
    lab.reboot("victim")
    boot(lab, "victim")
    assert rows(lab, check("victim")) == isolated("victim")


def test_crash_after_confirm_is_finished_by_the_next_contain(agent: Agent) -> None:
    """Confirmed but the boot unit not written yet (the agent died): the next contain writes it."""
    lab = agent.lab
    with agent.open("victim") as s:
        agent.isolate(s, {"confirm_seconds": DELAY})  # as if the crashed run got this far
        _, result, ver = agent.isolate(s, {"survive_reboot": True, "confirm_seconds": DELAY})
    assert result.changed and "installed the boot unit" in result.summary, result.summary
    assert ver.in_effect and ver.observed["survives_reboot"], ver
    reboot_and_boot(lab, "victim")
    assert rows(lab, check("victim")) == isolated("victim")


def test_foreign_unit_of_our_name_is_refused_and_kept(agent: Agent) -> None:
    lab = agent.lab
    lab.exec("victim", ["sh", "-c", f"printf '[Service]\\nExecStart=/bin/true\\n' > {persist.UNIT}"])
    try:
        with agent.open("victim") as s, pytest.raises(Rejected, match="not the agent's"):
            agent.isolate(s, {"survive_reboot": True})
        assert rows(lab, check("victim")) == open_("victim")
        assert "ExecStart=/bin/true" in lab.exec("victim", ["cat", persist.UNIT]).stdout
    finally:
        lab.exec("victim", ["rm", "-f", persist.UNIT])


def test_a_timer_record_that_outlives_the_reboot_never_acts(agent: Agent) -> None:
    """A service account keeps its dead-man record in its home, which survives a reboot (the timer process does
    not). A contain after the reboot is neither held up nor undone by it: the record names a PID that is no longer
    a timer with that token, so it is ignored."""
    lab = agent.lab
    sudo = {"options": {"sudo": True}}
    crash_between_load_and_confirm(lab, "before-confirm", {"survive_reboot": True}, host="sudohost",
                                   user=SUDO_ACCOUNT, **sudo)
    assert reboot_and_boot(lab, "sudohost") == []
    record = f"/home/{SUDO_ACCOUNT}/.containment-agent/deadman"
    assert lab.exec("sudohost", ["cat", record]).stdout.strip(), "the record should have survived the reboot"
    with agent.open("sudohost", user=SUDO_ACCOUNT, **sudo) as s:
        start = time.monotonic()
        _, result, ver = agent.isolate(s, {"survive_reboot": True, "confirm_seconds": DELAY})
        assert ver.in_effect and time.monotonic() - start < 10, (result, ver)
        assert "took_over" not in result.details, result.details
    time.sleep(DELAY + 1)
    assert rows(lab, check("sudohost")) == isolated("sudohost")
    reboot_and_boot(lab, "sudohost")
    assert rows(lab, check("sudohost")) == isolated("sudohost")
    with agent.open("sudohost", user=SUDO_ACCOUNT, **sudo) as s:
        assert agent.conn.verify(s, "isolate", {"survive_reboot": True}).in_effect
        agent.conn.undo(s, "isolate", {}, agent.conn.snapshot(s, "isolate", {}))


def test_a_timer_that_fires_removes_the_boot_unit_too(agent: Agent) -> None:
    """A later, unconfirmed re-isolation whose timer fires lifts everything: the live rules and the boot unit, so
    the next boot agrees with the host's state (open) and with verify."""
    lab = agent.lab
    with agent.open("victim") as s:
        agent.isolate(s, {"survive_reboot": True, "confirm_seconds": DELAY})
        wider = {"management": [lab.management_address, lab.hosts["fw"].address], "confirm": False,
                 "confirm_seconds": DELAY}
        agent.isolate(s, wider)
        assert wait_until(lambda: not agent.conn.verify(s, "isolate", wider).observed["present"], timeout=DELAY + 10)
    assert reboot_and_boot(lab, "victim") == []
    assert rows(lab, check("victim")) == open_("victim")


def test_a_new_isolation_rewrites_the_boot_unit(agent: Agent) -> None:
    """Re-isolating with other arguments (a wider management set) replaces what boot applies: after the reboot the
    host is isolated as the newest containment says, not as the first one did."""
    lab = agent.lab
    wider = {"survive_reboot": True, "confirm_seconds": DELAY,
             "management": [lab.management_address, lab.hosts["fw"].address]}
    with agent.open("victim") as s:
        agent.isolate(s, {"survive_reboot": True, "confirm_seconds": DELAY})
        _, result, ver = agent.isolate(s, wider)
    assert ver.in_effect and result.details["survives_reboot"]["installed"] == "now", result.details
    reboot_and_boot(lab, "victim")
    with agent.open("victim") as s:
        assert agent.conn.verify(s, "isolate", wider).in_effect
