"""The practice lab builds real hosts, proves reachability, and tears down without leaving anything behind."""

from __future__ import annotations

import json
import os
import re
import stat
import time

import paramiko
import pytest
import yaml

from agent.lab import Lab, LabCommandError, LabError, netns, procs
from agent.lab import cli as lab_cli

pytestmark = pytest.mark.root

SSHD_HOSTS = ("victim", "peer", "legacy", "fw")


def _ssh(lab: Lab, host: str, known_hosts: str | None = None, **options: object) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(known_hosts or str(lab.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with lab.enter("mgmt"):
        client.connect(lab.hosts[host].address, username="root", key_filename=str(lab.agent_key),
                       allow_agent=False, look_for_keys=False, timeout=5, **options)  # type: ignore[arg-type]
    return client


def _run(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    _, stdout, _ = client.exec_command(command, timeout=10)
    out = stdout.read().decode()
    return stdout.channel.recv_exit_status(), out


def _pids_in_namespaces(namespaces: list[str]) -> set[int]:
    inodes = {os.stat(netns.NETNS_DIR / ns).st_ino for ns in namespaces if netns.exists(ns)}
    return {pid for kids in procs.children_map().values() for pid in kids if procs.net_ns_inode(pid) in inodes}


class TestTopology:
    def test_every_namespace_exists(self, lab: Lab) -> None:
        """up() creates the switch and one namespace per host, all named with the lab's prefix."""
        assert set(lab.namespaces) <= set(netns.list_names(lab.prefix + "-"))
        assert {h.namespace for h in lab.hosts.values()} == {f"{lab.prefix}-{n}" for n in
                                                            ("fw", "mgmt", "victim", "peer", "legacy", "sudohost",
                                                             "attacker", "dmz")}

    def test_root_namespace_sees_no_lab_interface(self, lab: Lab) -> None:
        """Veth pairs are created directly inside the lab namespaces, never in the machine's own."""
        links = netns.ip("-o", "link", "show").stdout
        assert not re.search(rf"\d+: {re.escape(lab.prefix)}-", links)

    def test_addresses_and_routes(self, lab: Lab) -> None:
        """LAN hosts route via fw .1, the attacker via fw's outside address, and fw has no default route."""
        assert lab.hosts["victim"].address == "10.77.0.20"
        assert lab.hosts["fw"].addresses == ("10.77.0.1", "10.77.1.1", "10.77.2.1")
        assert "default via 10.77.0.1" in lab.exec("peer", ["ip", "route"]).stdout
        assert "default via 10.77.1.1" in lab.exec("attacker", ["ip", "route"]).stdout
        fw_routes = lab.exec("fw", ["ip", "route"]).stdout
        assert "default" not in fw_routes
        outside = lab.exec("fw", ["ip", "route", "get", "192.0.2.1"], check=False)
        assert outside.returncode != 0 and "unreachable" in outside.stderr

    def test_router_forwards_and_switch_does_not_filter(self, lab: Lab) -> None:
        """fw forwards packets; bridge netfilter is off in the switch namespace only."""
        assert lab.exec("fw", ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
        assert lab.exec("victim", ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "0"
        nf = netns.run(f"{lab.prefix}-sw", ["cat", "/proc/sys/net/bridge/bridge-nf-call-iptables"], check=False)
        if nf.returncode == 0:
            assert nf.stdout.strip() == "0"


class TestProbe:
    def test_baseline_matrix_is_all_open(self, clean_lab: Lab) -> None:
        """At baseline every check of the default matrix connects, in well under a second."""
        result = clean_lab.probe()
        assert result.all_open(), result.render()
        assert {"mgmt->victim:22", "attacker->victim:8080", "victim->attacker:8080", "legacy->peer:8080",
                "mgmt->legacy:22", "peer->legacy:8080", "mgmt->peer:8080"} <= set(result.as_dict())
        assert result.elapsed < 1.0

    def test_closed_port_is_blocked(self, clean_lab: Lab) -> None:
        """A port nobody listens on reports blocked, so the probe can tell open from not."""
        result = clean_lab.probe([("mgmt", "victim", 9), ("mgmt", "victim", 8080)])
        assert result.as_dict() == {"mgmt->victim:9": "blocked", "mgmt->victim:8080": "open"}
        assert result.checks[0].detail == "refused"

    def test_dropped_traffic_is_blocked_within_the_timeout_and_reset_restores(self, clean_lab: Lab) -> None:
        """An nft drop on the victim blocks probes in about one timeout, and reset() brings the baseline back."""
        baseline = clean_lab.probe()
        clean_lab.exec("victim", ["nft", "-f", "-"], input=(
            "table inet containment {\n chain input {\n  type filter hook input priority 0; policy accept;\n"
            "  tcp dport 8080 drop\n }\n}\n"))
        start = time.monotonic()
        after = clean_lab.probe()
        assert time.monotonic() - start < 1.8
        assert after.diff(baseline) == {"mgmt->victim:8080": ("blocked", "open"),
                                        "attacker->victim:8080": ("blocked", "open"),
                                        "peer->victim:8080": ("blocked", "open")}
        assert "blocked" in after.render()
        clean_lab.reset()
        assert clean_lab.probe().diff(baseline) == {}

    def test_unknown_host_is_a_clear_error(self, lab: Lab) -> None:
        """Naming a host the lab does not have raises LabError listing the real ones."""
        with pytest.raises(LabError, match="no lab host 'nosuch'.*victim"):
            lab.probe([("mgmt", "nosuch", 22)])


class TestSshd:
    @pytest.mark.parametrize("host", SSHD_HOSTS)
    def test_login_with_the_pinned_host_key(self, lab: Lab, host: str) -> None:
        """Each sshd accepts the lab's agent key as root and presents exactly the key pinned in known_hosts."""
        client = _ssh(lab, host)
        try:
            assert _run(client, "hostname") == (0, host + "\n")
        finally:
            client.close()

    def test_only_curve25519_key_exchange(self, lab: Lab) -> None:
        """sshd offers only curve25519 (fast) key exchange: a client without it cannot connect."""
        curve = ["curve25519-sha256", "curve25519-sha256@libssh.org"]
        with pytest.raises(paramiko.SSHException, match="kex"):
            _ssh(lab, "victim", disabled_algorithms={"kex": curve})

    def test_wrong_pinned_key_is_refused(self, lab: Lab, tmp_path: os.PathLike[str]) -> None:
        """With another host's key pinned for the victim's address, the connection is refused."""
        lines = lab.known_hosts.read_text().splitlines()
        peer_key = next(line for line in lines if line.startswith("10.77.0.30 ")).split(" ", 1)[1]
        fake = os.path.join(tmp_path, "known_hosts")
        with open(fake, "w") as fh:
            fh.write(f"10.77.0.20 {peer_key}\n")
        with pytest.raises(paramiko.BadHostKeyException):
            _ssh(lab, "victim", fake)

    def test_root_home_is_empty_and_private(self, lab: Lab) -> None:
        """Commands run with an empty per-host HOME over /root and a private /run."""
        client = _ssh(lab, "victim")
        try:
            assert _run(client, "ls -A /root; test -d /run/sshd && echo run-ok") == (0, "run-ok\n")
        finally:
            client.close()

    def test_agent_key_is_private(self, lab: Lab) -> None:
        """The agent's private key is mode 0600."""
        assert stat.S_IMODE(lab.agent_key.stat().st_mode) == 0o600


class TestLegacy:
    def test_nft_is_hidden_but_iptables_works(self, clean_lab: Lab) -> None:
        """legacy has no nft in any shell (so connectors fall back to iptables), while victim keeps it."""
        for shell in ("bash", "sh"):
            assert clean_lab.exec("legacy", [shell, "-c", "command -v nft"], check=False).returncode != 0
        assert clean_lab.exec("legacy", ["iptables", "-S", "INPUT"]).stdout.startswith("-P INPUT ACCEPT")
        assert clean_lab.exec("victim", ["sh", "-c", "command -v nft"]).stdout.strip() == "/usr/sbin/nft"
        assert not clean_lab.hosts["legacy"].has_nft and clean_lab.hosts["victim"].has_nft

    def test_nft_is_hidden_over_ssh_too(self, lab: Lab) -> None:
        """What a connector sees over SSH on legacy: no nft, but iptables."""
        client = _ssh(lab, "legacy")
        try:
            assert _run(client, "command -v nft")[0] != 0
            assert _run(client, "command -v iptables") == (0, "/usr/sbin/iptables\n")
        finally:
            client.close()


class TestExec:
    def test_runs_in_the_host_namespaces(self, lab: Lab) -> None:
        """exec runs inside the host: its own hostname (UTS) and its own address."""
        assert lab.exec("victim", ["hostname"]).stdout.strip() == "victim"
        assert "10.77.0.10/24" in lab.exec("mgmt", ["ip", "-o", "addr"]).stdout

    def test_input_and_exit_status(self, lab: Lab) -> None:
        """stdin reaches the command; a non-zero exit raises LabCommandError unless check=False."""
        assert lab.exec("peer", ["cat"], input="hello").stdout == "hello"
        with pytest.raises(LabCommandError) as info:
            lab.exec("peer", ["sh", "-c", "echo boom >&2; exit 3"])
        assert info.value.returncode == 3 and "boom" in str(info.value)
        assert lab.exec("peer", ["false"], check=False).returncode == 1


class TestLiveConnection:
    def test_session_is_alive_until_its_flow_is_cut(self, clean_lab: Lab) -> None:
        """An attacker connection echoes while open and stops once the victim drops its traffic."""
        with clean_lab.open_session("attacker", "victim", 8080) as conn:
            assert conn.alive()
            assert conn.alive()
            drop_all = ("add table inet containment; add chain inet containment input "
                        "{ type filter hook input priority 0; policy drop; }")
            clean_lab.exec("victim", ["nft", drop_all])
            assert not conn.alive(timeout=0.5)
        assert not conn.alive()

    def test_unreachable_port_raises(self, lab: Lab) -> None:
        """Opening a session to a closed port raises LabError naming the flow."""
        with pytest.raises(LabError, match="attacker -> victim:9"):
            lab.open_session("attacker", "victim", 9, timeout=1)


class TestConfig:
    def test_inventory_and_settings(self, lab: Lab) -> None:
        """The generated config points at the lab's key, known_hosts and state, and protects mgmt."""
        agent = yaml.safe_load((lab.config_dir / "agent.yaml").read_text())
        inv = yaml.safe_load((lab.config_dir / "inventory.yaml").read_text())
        assert agent["ssh"]["known_hosts"] == str(lab.known_hosts)
        assert agent["database"] == str(lab.state_dir / "agent.db")
        assert agent["inventory"] == str(lab.config_dir / "inventory.yaml")
        assert inv["management"]["addresses"] == ["10.77.0.10"]
        assert inv["protected"] == {"hosts": ["mgmt"], "cidrs": ["10.77.0.10/32"], "accounts": ["breakglass"]}
        assert set(inv["hosts"]) == {"victim", "peer", "legacy", "sudohost", "dmz", "mgmt"}
        assert inv["hosts"]["legacy"]["credentials"] == {"username": "root",
                                                        "private_key": f"file:{lab.agent_key}"}
        assert inv["devices"]["fw"]["device_type"] == "linux" and inv["devices"]["fw"]["edge"] is True
        pinned = {line.split()[0] for line in lab.known_hosts.read_text().splitlines()}
        assert pinned == {"10.77.0.1", "10.77.1.1", "10.77.0.20", "10.77.0.30", "10.77.0.40", "10.77.0.60",
                          "10.77.2.1", "10.77.2.10"}


class TestCli:
    def test_probe_json_and_status(self, clean_lab: Lab, capsys: pytest.CaptureFixture[str]) -> None:
        """`lab probe --json` prints the matrix and `lab status` says the lab is up."""
        assert lab_cli.main(["probe", "--prefix", clean_lab.prefix, "--json"]) == 0
        checks = json.loads(capsys.readouterr().out)["checks"]
        assert checks and all(c["state"] == "open" for c in checks)
        assert lab_cli.main(["status", "--prefix", clean_lab.prefix]) == 0
        assert "is up" in capsys.readouterr().out

    def test_usage_errors_and_missing_lab(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Unknown subcommands exit 2; probing a lab that is not up exits 3; a bad prefix exits 1."""
        if os.geteuid() != 0:
            pytest.skip("needs root")
        assert lab_cli.main(["explode"]) == 2
        assert lab_cli.main(["probe", "--prefix", "nolab"]) == 3
        assert lab_cli.main(["up", "--prefix", "Bad-Prefix"]) == 1
        assert "invalid" in capsys.readouterr().err


class TestLifecycle:
    def test_up_down_up(self, spare_lab: Lab) -> None:
        """A lab comes up fast, tears down leaving no namespaces or processes, and comes up again."""
        start = time.monotonic()
        spare_lab.up()
        assert time.monotonic() - start < 3.0
        assert spare_lab.is_up() and spare_lab.probe().all_open()
        client = _ssh(spare_lab, "victim")  # an open session: its sshd child must die with the lab
        pid_files = sorted(spare_lab.state_dir.glob("hosts/*/*.pid"))
        started = [procs.read_pid(p) for p in pid_files]
        in_lab = _pids_in_namespaces(spare_lab.namespaces)
        assert len(started) == 12 and set(started) <= in_lab and len(in_lab) > len(started)
        spare_lab.down()
        client.close()
        assert not [ns for ns in spare_lab.namespaces if netns.exists(ns)]
        assert not [pid for pid in in_lab if procs.is_alive(pid)]
        assert not list(spare_lab.state_dir.glob("hosts/*/*.pid"))
        assert not spare_lab.is_up()
        spare_lab.down()  # idempotent
        spare_lab.up()
        assert spare_lab.probe().all_open()

    def test_up_keeps_a_healthy_lab_and_repairs_a_broken_one(self, spare_lab: Lab) -> None:
        """up() on a healthy lab changes nothing; after a daemon dies it rebuilds the lab."""
        spare_lab.up()
        sshd_pid = procs.read_pid(spare_lab.host_dir("victim") / "sshd.pid")
        spare_lab.up()
        assert procs.read_pid(spare_lab.host_dir("victim") / "sshd.pid") == sshd_pid
        assert sshd_pid is not None
        procs.terminate([sshd_pid])
        assert not spare_lab.is_up()
        spare_lab.up()
        assert spare_lab.is_up() and spare_lab.probe().all_open()
        assert procs.read_pid(spare_lab.host_dir("victim") / "sshd.pid") != sshd_pid


class TestRootCheck:
    def test_non_root_gets_a_clear_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without root, building a Lab raises LabError telling the user to use sudo."""
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        with pytest.raises(LabError) as info:
            Lab(prefix="cil").up()
        assert str(info.value) == "the practice lab needs root (network namespaces): run with sudo"
