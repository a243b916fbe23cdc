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
