"""Target selection as a responder uses it: comma lists, tags, sites, networks and EDR exports, resolved against the
inventory before anything is planned; typos answered with the closest names; many hosts need the count typed."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import InputError
from agent.inventory import load_inventory
from agent.targets import Selection, TargetSelector, suggest

REPO = Path(__file__).resolve().parents[2]
RUNBOOKS = REPO / "agent" / "data" / "runbooks"  # shipped as package data
CONFIG = REPO / "agent" / "data" / "config"  # the annotated example configuration

# Loopback addresses only: even a broken test that connected would never leave the machine.
INVENTORY = """\
management:
  addresses: [192.0.2.10]  # the agent's own address: never contacted
protected:
  hosts: [dc1]
defaults:
  ssh_linux:
    credentials: {username: root, private_key: file:/nonexistent/key}
hosts:
  web01: {address: 127.0.1.21, os: linux, tags: [web, outbreak]}
  web02: {address: 127.0.1.22, os: linux, tags: [web, outbreak]}
  db01: {address: 127.0.2.31, os: linux, tags: [db]}
  fin-ws-17: {address: 127.0.3.47, os: linux, tags: [outbreak]}
  fin-ws-18: {address: 127.0.3.48, os: linux, tags: [outbreak]}
  fin-ws-19: {address: 127.0.3.49, os: linux, tags: [outbreak]}
  fin-ws-20: {address: 127.0.3.50, os: linux, tags: [outbreak]}
  dc1: {address: 127.0.2.5, os: linux, tags: [infra]}
"""


@pytest.fixture
def inv(tmp_path: Path):
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    return load_inventory(tmp_path / "inventory.yaml")


class TestSelectors:
    def test_comma_list_and_repeats_keep_order_without_duplicates(self, inv):
        """`--host web02,web01 --host web02` is web02 then web01, once each."""
        assert TargetSelector(inv).resolve(Selection(hosts=["web02, web01", "web02"])) == ["web02", "web01"]

    def test_tag_selects_every_tagged_host(self, inv):
        """--tag outbreak is all six tagged hosts; the reasons say which selector chose each."""
        sel = TargetSelector(inv)
        names = sel.resolve(Selection(tags=["outbreak"]))
        assert names == ["web01", "web02", "fin-ws-17", "fin-ws-18", "fin-ws-19", "fin-ws-20"]
        assert sel.reasons["web01"] == ["--tag outbreak"]

    def test_cidr_selects_hosts_by_address(self, inv):
        """--cidr 127.0.3.0/24 is the finance workstations, host bits allowed as people type them."""
        assert TargetSelector(inv).resolve(Selection(cidrs=["127.0.3.1/24"])) == [
            "fin-ws-17", "fin-ws-18", "fin-ws-19", "fin-ws-20"]

    def test_address_of_an_inventory_host_resolves_to_its_name(self, inv):
        """An address that belongs to an inventory host is journaled under the host's name."""
        assert TargetSelector(inv).resolve(Selection(hosts=["127.0.2.31"])) == ["db01"]

    def test_from_file_reads_an_edr_export(self, inv, tmp_path: Path):
        """One name per line, BOM, comments, blank lines and extra CSV columns are tolerated."""
        f = tmp_path / "edr.csv"
        f.write_bytes("\ufeff# exported 03:12\nfin-ws-17,high,beacon\n\n  fin-ws-19   # second\n".encode())
        assert TargetSelector(inv).resolve(Selection(files=[str(f)])) == ["fin-ws-17", "fin-ws-19"]

    def test_from_stdin(self, inv, monkeypatch):
        """`--from-file -` reads standard input (a pipe from the EDR's CLI)."""
        monkeypatch.setattr(sys, "stdin", io.StringIO("web01\nweb02\n"))
        assert TargetSelector(inv).resolve(Selection(files=["-"])) == ["web01", "web02"]

    def test_site_from_options(self, inv):
        """A host's site (inventory `site`) selects it; an unknown site lists the known ones."""
        with pytest.raises(InputError, match=r"--site 'boston'.*known sites: none"):
            TargetSelector(inv).resolve(Selection(sites=["boston"]))


class TestRefusals:
    def test_typo_suggests_the_closest_name(self, inv):
        """`web1` is not a host; the error names the selector and suggests web01."""
        with pytest.raises(InputError, match=r"--host web1: host 'web1' is not in the inventory .*"
                                             r"did you mean 'web01'"):
            TargetSelector(inv).resolve(Selection(hosts=["web1"]))

    def test_typo_in_a_file_names_file_and_line(self, inv, tmp_path: Path):
        """A bad name in an export says which line, so the responder can fix the file."""
        f = tmp_path / "hosts.txt"
        f.write_text("web01\nfin-ws-71\n")
        with pytest.raises(InputError, match=rf"{f}:2: host 'fin-ws-71'.*did you mean 'fin-ws-17'"):
            TargetSelector(inv).resolve(Selection(files=[str(f)]))

    def test_unknown_tag_lists_known_tags(self, inv):
        with pytest.raises(InputError, match=r"--tag 'outbrake'.*did you mean 'outbreak'.*known tags: db, infra"):
            TargetSelector(inv).resolve(Selection(tags=["outbrake"]))

    def test_empty_item_in_comma_list_is_refused(self, inv):
        """`--host web01,,web02` probably lost a name: refused rather than guessed."""
        with pytest.raises(InputError, match="empty name"):
            TargetSelector(inv).resolve(Selection(hosts=["web01,,web02"]))

    def test_bad_cidr_and_empty_file(self, inv, tmp_path: Path):
        with pytest.raises(InputError, match=r"--cidr '10.0.0.0/33': not an IPv4/IPv6 network"):
            TargetSelector(inv).resolve(Selection(cidrs=["10.0.0.0/33"]))
        (tmp_path / "empty").write_text("# nothing\n")
        with pytest.raises(InputError, match="no host names in it"):
            TargetSelector(inv).resolve(Selection(files=[str(tmp_path / "empty")]))

    def test_nothing_selected(self, inv):
        with pytest.raises(InputError, match="no target given"):
            TargetSelector(inv).resolve(Selection())

    def test_suggest_is_case_insensitive(self):
        assert suggest("WEB01", ["web01", "db01"])[0] == "web01"


def _config(tmp_path: Path) -> Path:
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    (tmp_path / "agent.yaml").write_text(
        f"inventory: inventory.yaml\nrunbooks: {RUNBOOKS}\ndatabase: var/agent.db\naudit_dir: var/audit\n"
        "evidence_dir: var/evidence\nengine: {confirm_count_above: 3}\n")
    return tmp_path / "agent.yaml"


def _agent(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_CONFIG": str(cfg), "NO_COLOR": "1", "AGENT_NO_WARM": "1"}
    return subprocess.run([str(REPO / ".venv" / "bin" / "agent"), *args], capture_output=True, text=True,
                          env=env, stdin=subprocess.DEVNULL, timeout=60, check=False)


class TestCommandLine:
    def test_dry_run_by_tag_lists_every_selected_host(self, tmp_path: Path):
        """`agent contain --tag web --dry-run` plans both web hosts and touches nothing."""
        res = _agent(_config(tmp_path), "contain", "--tag", "web", "--dry-run", "--json")
        assert res.returncode == 0, res.stderr
        plan = json.loads(res.stdout)["plan"]
        assert plan["subjects"] == ["web01", "web02"]
        assert {a["target"] for a in plan["actions"]} == {"web01", "web02"}

    def test_many_hosts_with_yes_need_the_count(self, tmp_path: Path):
        """Six hosts > confirm_count_above 3: --yes alone is refused (exit 3) and nothing is journaled."""
        cfg = _config(tmp_path)
        res = _agent(cfg, "contain", "--tag", "outbreak", "--yes", "--reason", "t")
        assert res.returncode == 3, res.stdout + res.stderr
        assert "pass --count 6 with --yes" in res.stderr
        res = _agent(cfg, "contain", "--tag", "outbreak", "--yes", "--count", "5", "--reason", "t")
        assert res.returncode == 3 and "got --count 5" in res.stderr
        assert not (tmp_path / "var" / "agent.db").exists() or "action.intent" not in _audit_text(tmp_path)

    def test_typo_exits_2_with_suggestion(self, tmp_path: Path):
        res = _agent(_config(tmp_path), "contain", "--host", "web1", "--dry-run")
        assert res.returncode == 2
        assert "did you mean 'web01'" in res.stderr

    def test_release_refuses_hosts_and_incident_together(self, tmp_path: Path):
        res = _agent(_config(tmp_path), "release", "--host", "web01", "--incident-all", "INC-1", "--dry-run")
        assert res.returncode == 2 and "either --incident-all or hosts" in res.stderr


def _audit_text(tmp_path: Path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "var" / "audit").glob("*")) if (
        tmp_path / "var" / "audit").exists() else ""
