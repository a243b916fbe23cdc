"""The boot unit of ``survive_reboot`` (issue 14): what is written, how it reads back, and that systemd accepts it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from connectors.ssh_linux import loading, persist, reboot
from connectors.ssh_linux.state import FirewallState, parse_state
from connectors.ssh_linux.validation import parse_isolate_args

ARGS = parse_isolate_args({"survive_reboot": True}, ["10.0.0.5"])


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / persist.UNIT_NAME
    unit.write_text(persist.unit_text())
    run = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0 and persist.UNIT_NAME not in run.stderr, run.stderr


def test_unit_runs_the_boot_script_before_the_network_after_other_firewalls() -> None:
    text = persist.unit_text()
    assert f"ExecStart=/bin/sh {persist.BOOT_SCRIPT}" in text
    assert "Before=network-pre.target" in text and "WantedBy=multi-user.target" in text
    after = next(line for line in text.splitlines() if line.startswith("After="))
    for unit in ("nftables.service", "firewalld.service", "ufw.service", "netfilter-persistent.service"):
        assert unit in after


@pytest.mark.parametrize("tool", ["nft", "iptables"])
def test_boot_script_is_valid_sh_and_holds_the_loaded_ruleset(tool: str) -> None:
    st = FirewallState(tool=tool, ruleset="")
    boot = reboot.boot_text(st, ARGS)
    assert subprocess.run(["sh", "-n"], input=boot, text=True, check=False).returncode == 0
    load, ruleset = loading.load_parts(st, ARGS, {})
    assert ruleset.rstrip("\n") in boot and load in boot and persist.BOOT_SCRIPT not in boot
    assert boot.splitlines()[1] == f"# {persist.rules.OWNER_MARK}"


def test_boot_script_refuses_its_own_delimiter() -> None:
    with pytest.raises(ValueError, match="delimiter"):
        persist.boot_script("true", "x\nCONTAINMENT_AGENT_RULESET\ny")


def test_state_section_reads_ours_foreign_and_the_link() -> None:
    section = (f"@@PERSIST\nsystemd yes\nfile {persist.BOOT_SCRIPT} {'a' * 64} ours\n"
               f"file {persist.UNIT} {'b' * 64} foreign\nlink {persist.WANTS} {persist.UNIT}\n")
    st = parse_state("@@TOOL nft\n@@RULESET\n" + section)
    assert st.persist.systemd and st.persist.foreign == (persist.UNIT,)
    assert st.persist.found == {persist.BOOT_SCRIPT: "a" * 64, persist.WANTS: persist.UNIT}
    want = persist.expected("boot")
    assert f"{persist.UNIT} missing" in st.persist.problems(want)
    assert f"{persist.BOOT_SCRIPT} differs from the isolation in force" in st.persist.problems(want)
    assert len(st.persist.problems(None)) == 2


def test_install_refuses_a_malformed_token() -> None:
    with pytest.raises(ValueError):
        persist.install_command("x; rm -rf /", "true")


def test_survive_reboot_must_be_a_boolean() -> None:
    from connectors.errors import InvalidInput
    with pytest.raises(InvalidInput, match="survive_reboot"):
        parse_isolate_args({"survive_reboot": "yes"}, ["10.0.0.5"])


def test_firewall_managers_are_read_like_a_systemd_host_runs_them(tmp_path: Path) -> None:
    """The state script's firewalld/ufw section, run by sh with the host's files replaced: a systemd host's
    firewalld has no PID file (firewalld.service: ExecStart=/usr/sbin/firewalld --nofork --nopid), so its unit's
    state is asked; ``systemctl`` here is a stub that answers "active"."""
    from connectors.ssh_linux import state
    section = state.STATE_SCRIPT[state.STATE_SCRIPT.index("echo '@@FWMGR'"):]
    root = tmp_path
    (root / "bin").mkdir()
    (root / "bin" / "systemctl").write_text("#!/bin/sh\n[ \"$3\" = firewalld.service ]\n")
    (root / "bin" / "systemctl").chmod(0o755)
    script = (section.replace("/run/systemd/system", str(root / "run-systemd"))
              .replace("/etc/firewalld/firewalld.conf", str(root / "firewalld.conf"))
              .replace("/etc/ufw/ufw.conf", str(root / "ufw.conf")).replace("/etc/default/ufw", str(root / "ufw")))
    env = {"PATH": f"{root / 'bin'}:/usr/bin:/bin"}

    def managers() -> dict[str, str]:
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=True).stdout
        return parse_state("@@TOOL iptables\n@@RULESET\n" + out).managers

    assert managers() == {}  # not a systemd host, no PID file, ufw not enabled
    (root / "run-systemd").mkdir()
    (root / "firewalld.conf").write_text("FirewallBackend=iptables\n")
    (root / "ufw.conf").write_text("ENABLED=yes\n")
    (root / "ufw").write_text("MANAGE_BUILTINS=yes\n")
    st = FirewallState(tool="iptables", ruleset="")
    st.managers = managers()
    assert st.managers == {"firewalld": "iptables", "ufw": "yes"}
    from connectors.ssh_linux import fwmanagers
    assert "FirewallBackend=iptables" in fwmanagers.reload_hazard(st)
