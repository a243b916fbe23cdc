"""The state read's shell, run by a real ``sh`` with ``nft`` and ``priv`` stubbed (issue 19, fan-out): our table
is listed as JSON only when the ruleset names it — one ``nft`` run fewer per read where it is absent (before an
isolation, after a release) — and what the parser sees is the same either way."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from connectors.ssh_linux import rules
from connectors.ssh_linux.hostfuncs import STATE_SCRIPT
from connectors.ssh_linux.state import parse_state

OURS = (f"table {rules.TABLE} {{\n\tcomment \"{rules.OWNER_MARK}\"\n\tchain input {{\n\t\ttype filter hook input "
        "priority filter - 10; policy drop;\n\t}\n}\n")
OTHER = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t}\n}\n"
TABLE_JSON = ('{"nftables": [{"table": {"family": "inet", "name": "containment_agent"}}, {"chain": {"family": '
              '"inet", "table": "containment_agent", "name": "input", "type": "filter", "hook": "input", '
              '"prio": -10, "policy": "drop"}}]}')
# priv logs its argv and plays nft: "list ruleset" prints $RULESET (exit $RC), "-j list table" the JSON above.
STUB = ('priv() { echo "$*" >> "$LOG"; case "$1 $2" in "nft list") printf "%s" "$RULESET"; return "$RC";; '
        '"nft -j") printf "%s\\n" "$TABLE_JSON";; esac; }; D="$TMPD"; ')


def _read(tmp_path: Path, ruleset: str, rc: int = 0) -> tuple[list[str], str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nft").write_text("#!/bin/sh\nexit 0\n")  # only for `command -v nft`
    (bin_dir / "nft").chmod(0o755)
    log = tmp_path / "log"
    log.write_text("")
    out = subprocess.run(["sh", "-c", STUB + STATE_SCRIPT], capture_output=True, text=True, check=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(log), "RULESET": ruleset,
                              "RC": str(rc), "TABLE_JSON": TABLE_JSON, "TMPD": str(tmp_path / "d")}).stdout
    return [ln for ln in log.read_text().splitlines() if ln.startswith("nft ")], out


def test_without_our_table_nft_runs_once(tmp_path: Path) -> None:
    calls, out = _read(tmp_path, OTHER)
    assert calls == ["nft list ruleset"]
    st = parse_state(out)
    assert st.tool == "nft" and st.ruleset == OTHER and st.nft_table is None and not st.failed and not st.present


@pytest.mark.parametrize("ruleset", [OURS, OTHER + OURS])
def test_with_our_table_it_is_listed_as_json(tmp_path: Path, ruleset: str) -> None:
    calls, out = _read(tmp_path, ruleset)
    assert calls == ["nft list ruleset", f"nft -j list table {rules.TABLE}"]
    st = parse_state(out)
    assert st.ruleset == ruleset and st.nft_table is not None and st.present and not st.foreign


def test_empty_ruleset_and_failed_listing(tmp_path: Path) -> None:
    calls, out = _read(tmp_path, "")
    assert calls == ["nft list ruleset"] and parse_state(out).ruleset == ""
    _, out = _read(tmp_path, "Error: Could not process rule: Operation not permitted\n", rc=1)
    st = parse_state(out)
    assert st.failed == "nft list ruleset" and "Operation not permitted" in st.ruleset


def _logging_path(tmp_path: Path) -> tuple[Path, Path]:
    """A PATH directory whose grep, readlink and sed log each run, then run the real tool."""
    bin_dir, log = tmp_path / "wrap", tmp_path / "tools.log"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("grep", "readlink", "sed"):
        (bin_dir / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexec /usr/bin/{tool} "$@"\n')
        (bin_dir / tool).chmod(0o755)
    return bin_dir, log


@pytest.mark.parametrize(("conf", "enabled"), [
    ("# /etc/ufw/ufw.conf\nENABLED=no\nLOGLEVEL=low\n", False),
    ("ENABLED=yes\nLOGLEVEL=low\n", True),
    ("LOGLEVEL=low\nENABLED=yes", True),            # last line without a newline
    ("  ENABLED=yes\n#ENABLED=yes\n", False),       # grep '^ENABLED=yes' matched neither
    ("ENABLED=yes # set by ufw enable\n", True),
    ("", False)])
def test_ufw_enabled_is_read_like_grep_without_a_process(tmp_path: Path, conf: str, enabled: bool) -> None:
    """The state read tells ufw enabled from ``ENABLED=yes`` at the start of a line of ufw.conf, as
    ``grep -qs '^ENABLED=yes'`` did, with shell builtins only (one process fewer per read on every host that
    has ufw installed but off, Debian's default)."""
    path = tmp_path / "ufw.conf"
    path.write_text(conf)
    grep = subprocess.run(["grep", "-qs", "^ENABLED=yes", str(path)], check=False).returncode == 0
    assert grep == enabled
    bin_dir, log = _logging_path(tmp_path)
    script = STUB + STATE_SCRIPT.replace("/etc/ufw/ufw.conf", str(path)).replace("/etc/default/ufw",
                                                                                  str(tmp_path / "absent"))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                         env={"PATH": f"{bin_dir}:/usr/bin:/bin", "LOG": str(tmp_path / "log"), "RULESET": OTHER,
                              "RC": "0", "TABLE_JSON": TABLE_JSON, "TMPD": str(tmp_path / "d")}).stdout
    assert ("ufw" in parse_state(out).managers) == enabled
    runs = log.read_text().splitlines() if log.exists() else []
    assert not [r for r in runs if r.startswith("grep")], runs  # sed runs only when ufw is enabled
    assert len(runs) == (1 if enabled else 0), runs


def test_removing_an_absent_boot_unit_runs_no_tool(tmp_path: Path) -> None:
    """The revert (release, the dead-man timer) checks the boot unit's three paths with ``[ -L ]``/``[ -f ]``
    first: where none exists, no readlink and no grep runs."""
    from connectors.ssh_linux import persist

    bin_dir, log = _logging_path(tmp_path)
    root = tmp_path / "root"
    script = persist.remove_script()
    for path in (persist.WANTS, persist.UNIT, persist.DIR):  # the boot script lives in DIR
        script = script.replace(path, str(root) + path)
    subprocess.run(["sh", "-c", 'priv() { "$@"; }; ' + script], check=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert not log.exists()
    # present and ours: still removed (the guard only skips what is absent)
    for path in (persist.UNIT, persist.BOOT_SCRIPT):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    unit, boot = root / persist.UNIT.lstrip("/"), root / persist.BOOT_SCRIPT.lstrip("/")
    unit.write_text(f"# {persist.rules.OWNER_MARK}\n")
    boot.write_text(f"# {persist.rules.OWNER_MARK}\n")
    (root / persist.WANTS.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
    (root / persist.WANTS.lstrip("/")).symlink_to(str(root) + persist.UNIT)
    subprocess.run(["sh", "-c", 'priv() { "$@"; }; ' + script], check=True, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    assert not unit.exists() and not boot.exists() and not (root / persist.WANTS.lstrip("/")).is_symlink()
