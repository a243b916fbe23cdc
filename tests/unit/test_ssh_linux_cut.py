"""The cut command's shell logic, run by a real ``sh`` with ``priv`` stubbed (issue 19): ``ss -K -p`` — whose
``-p`` walks every process's descriptors in /proc — runs only when a plain listing found a socket to cut or
failed; with nothing to cut the host pays for one cheap listing. What is cut and reported is unchanged."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import pytest

from connectors.ssh_linux import flows

MGMT = [ipaddress.ip_network("10.77.0.10/32")]

# ``priv`` logs its argv; ``ss`` without -K lists $SOCKS (and exits $LIST_RC), ``ss -K`` prints what it "killed".
STUB = ('priv() { echo "$*" >> "$LOG"; case "$1" in ss) if [ "$2" = -K ]; then printf "%s" "$SOCKS"; return 0; '
        'fi; printf "%s" "$SOCKS"; return "${LIST_RC:-0}";; conntrack) return 0;; esac; }; ')


def _run(tmp_path: Path, socks: str, list_rc: int = 0) -> tuple[list[str], str]:
    log = tmp_path / "log"
    log.write_text("")
    out = subprocess.run(["sh", "-c", STUB + flows.cut_command(MGMT, 22)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "LOG": str(log), "SOCKS": socks, "LIST_RC": str(list_rc)},
                         check=True).stdout
    return [ln for ln in log.read_text().splitlines() if ln.startswith("ss ")], out


def test_nothing_to_cut_lists_once_without_p(tmp_path: Path) -> None:
    calls, out = _run(tmp_path, "")
    assert len(calls) == 1 and " -K" not in calls[0] and " -p" not in calls[0], calls
    assert "@@SS_RC 0" in out


@pytest.mark.parametrize("list_rc", [0, 1])
def test_sockets_found_or_listing_failed_destroys_with_process_names(tmp_path: Path, list_rc: int) -> None:
    socks = "tcp ESTAB 0 0 10.77.0.20:8080 10.77.0.66:41000\n" if list_rc == 0 else ""
    calls, out = _run(tmp_path, socks, list_rc)
    assert len(calls) == 2 and calls[1].startswith("ss -K -p "), calls
    assert calls[0].removeprefix("ss ") == calls[1].removeprefix("ss -K -p ")  # the same filter both times
    cut = flows.finish_cut(None, out, MGMT, 22)  # type: ignore[arg-type]  # no tracked flows: no session used
    assert cut["sockets_killed_count"] == (1 if socks else 0) and cut["ss_status"] == 0
    assert ("10.77.0.66:41000" in " ".join(cut["sockets_killed"])) == bool(socks)


PROC_LINES = (
    "ipv4     2 tcp      6 99 ESTABLISHED src=10.77.1.130 dst=10.77.0.20 sport=41000 dport=8080 [UNREPLIED] "
    "src=10.77.0.20 dst=10.77.1.130 sport=8080 dport=41000 mark=0 zone=0 use=2\n"
    "ipv4     2 tcp      6 431999 ESTABLISHED src=10.77.0.10 dst=10.77.0.20 sport=50000 dport=22 src=10.77.0.20 "
    "dst=10.77.0.10 sport=22 dport=50000 [ASSURED] mark=0 zone=0 use=2\n"
    "ipv6     10 udp      17 29 src=fd00::20 dst=fd00::66 sport=5353 dport=53 [UNREPLIED] src=fd00::66 dst=fd00::20 "
    "sport=53 dport=5353 mark=0 zone=0 use=2\n")


@pytest.mark.parametrize("readable", [True, False])
def test_tracked_flows_come_from_procfs_where_readable(tmp_path: Path, readable: bool) -> None:
    """/proc/net/nf_conntrack (root) instead of ``conntrack -L``, whose netlink dump locks every bucket of the
    machine-wide table (9.5 ms of CPU against 1.0 ms); where the file cannot be read, ``conntrack -L`` as before.
    Its lines (an "ipv4 2" prefix) parse to the same flows; the management tuple is still left alone."""
    proc = tmp_path / "nf_conntrack"
    if readable:  # else absent (no CONFIG_NF_CONNTRACK_PROCFS; a sudo login reads neither: the file is 0440 root)
        proc.write_text(PROC_LINES)
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    (bin_dir / "conntrack").write_text("#!/bin/sh\nexit 0\n")  # for `command -v conntrack`
    (bin_dir / "conntrack").chmod(0o755)
    stub = ('priv() { echo "$*" >> "$LOG"; case "$1" in conntrack) echo "tcp      6 99 ESTABLISHED src=10.77.1.9 '
            'dst=10.77.0.20 sport=4 dport=80 src=10.77.0.20 dst=10.77.1.9 sport=80 dport=4 mark=0 use=1";; esac; }; ')
    script = stub + flows.cut_command(MGMT, 22).replace("/proc/net/nf_conntrack", str(proc))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log)}).stdout
    calls = log.read_text().splitlines()
    found = flows.parse_conntrack(out.partition("@@CT")[2], MGMT, 22)
    if readable:
        assert not [c for c in calls if c.startswith("conntrack")], calls
        assert [(f["proto"], f["src"], f["dport"]) for f in found] == [("tcp", "10.77.1.130", 8080),
                                                                       ("udp", "fd00::20", 53)]
    else:
        assert "conntrack -L" in calls
        assert [(f["src"], f["dport"]) for f in found] == [("10.77.1.9", 80)]
