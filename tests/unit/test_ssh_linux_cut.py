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
