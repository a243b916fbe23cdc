"""The practice lab: a small network of real Linux hosts in network namespaces.

Why: technicians rehearse runbooks against it, the demo runs on it and the integration tests use it as their
targets (LAB.md). ``Lab.up()`` builds the topology of ``agent.lab.topology``, starts sshd and echo listeners,
writes the lab's agent key, known_hosts and configuration; ``probe()`` proves reachability; ``down()`` removes
every trace. Everything is named ``<prefix>-<host>`` so labs with different prefixes coexist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import MappingProxyType

from agent import paths
from agent.lab import guard, labconfig, netns, network, power, procs, sshd
from agent.lab.errors import NEEDS_ROOT, LabCommandError, LabError
from agent.lab.probe import (
    DEFAULT_MATRIX,
    LiveConnection,
    ProbeResult,
    answers,
    connect_from,
    run_probe,
    wait_until,
)
from agent.lab.topology import (
    LISTEN_PORT,
    MAX_FLEET,
    MAX_PER_SITE,
    MAX_SITES,
    MGMT_ADDRESS,
    HostSpec,
    LabHost,
    fleet_names,
    namespace_name,
    site_of,
    specs,
    validate_prefix,
    worker_host,
)

__all__ = ["Lab"]

REPO = Path(__file__).resolve().parents[2]
_ECHO = Path(__file__).with_name("echo.py")


class Lab:
    """One practice lab, named by ``prefix`` (namespaces ``<prefix>-<host>``, state in ``state_dir``)."""

    def __init__(self, prefix: str = "cal", state_dir: Path | None = None, config_dir: Path | None = None,
                 *, fleet: int | None = None, sites: int | None = None) -> None:
        """``fleet``: extra identical hosts h01..hNN (``lab up --hosts N``); None = the size this lab was built
        with (recorded in its state directory), so ``down``/``probe`` of a big lab see all of it. ``sites``: split
        them over K site segments, each reached only from its worker host wkK (``--sites K``; None: as recorded)."""
        if os.geteuid() != 0:
            raise LabError(NEEDS_ROOT)
        try:
            self.prefix = validate_prefix(prefix)
        except ValueError as exc:
            raise LabError(str(exc)) from None
        self.repo = REPO
        # In a working copy the lab keeps its state in var/ (and the demo's configuration in config/lab/); an
        # installed agent has no working copy, so there it lives in the state folder (agent.paths).
        checkout = (REPO / "pyproject.toml").is_file() and (REPO / "agent" / "lab").is_dir()
        lab_root = REPO / "var" / "lab" if checkout else paths.state_dir() / "lab"
        self.state_dir = Path(state_dir) if state_dir else lab_root / prefix
        if config_dir is not None:
            self.config_dir = Path(config_dir)
        else:
            self.config_dir = REPO / "config" / "lab" if checkout and prefix == "cal" else self.state_dir / "config"
        try:
            # sites not given: as recorded when the fleet is not given either (down/probe), else none
            self.sites = sites if sites is not None else 0 if fleet is not None else self._recorded("sites")
            self.fleet = self._recorded("fleet") if fleet is None else len(fleet_names(fleet, self.sites))
            fleet_names(self.fleet, self.sites)
        except ValueError as exc:
            raise LabError(str(exc)) from None
        self.specs = specs(self.fleet, self.sites)
        self.hosts: Mapping[str, LabHost] = MappingProxyType({
            name: LabHost(name=name, namespace=namespace_name(prefix, name), address=spec.address,
                          has_sshd=spec.sshd, has_nft=spec.nft, has_listener=spec.listener, login=spec.login,
                          addresses=tuple(cidr.split("/")[0] for _, cidr in spec.interfaces))
            for name, spec in self.specs.items()})
        self.timings: dict[str, float] = {}

    def _recorded_fleet(self) -> int:
        return self._recorded("fleet")

    def _recorded(self, what: str) -> int:
        """The fleet size or site count this lab was last built with (0 when never recorded)."""
        try:
            return int((self.state_dir / what).read_text(encoding="ascii").strip() or 0)
        except (OSError, ValueError):
            return 0

    def _every_sited(self) -> dict[str, HostSpec]:
        """The specs of this lab as built now and as last recorded (with sites), for a complete teardown."""
        out: dict[str, HostSpec] = {}
        for fleet, sites in ((self.fleet, self.sites), (self._recorded("fleet"), self._recorded("sites"))):
            if sites:
                out.update(specs(fleet, sites))
        return out

    def source_host(self, host: str) -> str:
        """Where ``host`` is reached from: mgmt; fw for the dmz host; wkK for a host of siteK."""
        segment = self.specs[host].segment
        if segment == "dmz":
            return "fw"
        return worker_host(segment) if segment.startswith("site") else "mgmt"

    def site_of(self) -> dict[str, str]:
        """Fleet host → its site (``--sites K``; empty without sites)."""
        return site_of(self.fleet, self.sites)

    # paths -----------------------------------------------------------------------------------------------
    @property
    def agent_key(self) -> Path:
        """Private key the agent logs in with (root on every sshd host); ``.pub`` beside it."""
        return self.state_dir / "agent_key"

    @property
    def known_hosts(self) -> Path:
        """known_hosts pinning every lab sshd's real host key by IP address."""
        return self.state_dir / "known_hosts"

    @property
    def namespaces(self) -> list[str]:
        """All namespaces of this lab, the switch first."""
        return network.namespace_names(self.prefix, self.specs)

    def host_dir(self, host: str) -> Path:
        return self.state_dir / "hosts" / host

    def _pid_files(self, host: str) -> list[Path]:
        spec = self.specs[host] if host in self.specs else specs(MAX_FLEET).get(host) or \
            specs(MAX_PER_SITE * MAX_SITES, MAX_SITES)[host]
        return ([self.host_dir(host) / "sshd.pid"] if spec.sshd else []) + \
               ([self.host_dir(host) / "echo.pid"] if spec.listener else [])

    # life cycle ------------------------------------------------------------------------------------------
    def up_ad(self) -> None:
        """Add the Samba AD DC to a running lab (``lab up --with-ad``); idempotent."""
        from agent.lab.ad import ad_present, up_ad
        if not ad_present(self.state_dir):
            try:
                up_ad(self.prefix, self.state_dir)
            except Exception as exc:
                self.down_ad()
                raise LabError(f"starting the Samba AD DC failed: {exc}") from exc
        self.write_config()

    def down_ad(self) -> None:
        from agent.lab.ad import down_ad
        down_ad(self.prefix, self.state_dir)

    def up(self, *, rebuild: bool = False) -> None:
        """Build the lab, or keep a healthy one already running (``rebuild=True`` always starts afresh).

        Returns once every sshd answers with its banner and every listener listens; raises LabError otherwise.
        """
        start = time.monotonic()
        if not rebuild and self.is_up() and self._answering(timeout=1.0):
            self.write_config()
            self.timings["up"] = time.monotonic() - start
            return
        self.down()
        try:
            guard.add_blackholes()  # before any lab address exists: nothing aimed at the lab can leave the machine
            self._prepare_files()
            network.build(self.prefix, self.specs)
            self._start_daemons()
            self.write_config()
            if not wait_until(self._daemons_started, timeout=10) or not self._answering(timeout=10):
                raise LabError(f"lab {self.prefix!r} did not come up: {self._log_tail()}")
        except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
            self.down()
            raise LabError(f"building lab {self.prefix!r} failed: {exc}") from exc
        except LabError:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - start

    def down(self) -> None:
        """Stop what the lab started (PID files and their descendants) and delete its namespaces; idempotent."""
        start = time.monotonic()
        self.down_ad()
        inodes = {os.stat(netns.NETNS_DIR / ns).st_ino for ns in self.namespaces if netns.exists(ns)}
        # a bigger lab built earlier goes entirely (its fleet and, with sites, its worker hosts)
        every = {**specs(min(max(self.fleet, self._recorded_fleet()), MAX_FLEET)), **self._every_sited()}
        pid_files = [pid_file for host in every for pid_file in self._pid_files(host)]
        survivors = procs.stop_started(pid_files, inodes, str(self.state_dir))
        for pid_file in pid_files:
            pid_file.unlink(missing_ok=True)
        left = network.delete(self.prefix, every)
        if not left:
            guard.remove_blackholes_if_last()  # kept while another lab on this machine still runs
        self.timings["down"] = time.monotonic() - start
        if survivors or left:
            raise LabError(f"lab {self.prefix!r} teardown left processes {sorted(survivors)} namespaces {left}")

    def is_up(self) -> bool:
        """True when every namespace exists and every daemon the lab started runs inside its namespace."""
        if not all(netns.exists(ns) for ns in self.namespaces):
            return False
        return self._daemons_started()

    def _daemons_started(self) -> bool:
        for host in self.specs:
            inode = os.stat(netns.NETNS_DIR / self.hosts[host].namespace).st_ino
            for pid_file in self._pid_files(host):
                pid = procs.read_pid(pid_file)
                if pid is None or not procs.is_alive(pid) or procs.net_ns_inode(pid) != inode:
                    return False
        return True

    def _answering(self, timeout: float) -> bool:
        """Wait until each sshd sends its banner and each listener accepts, as seen from mgmt (from fw for the
        dmz host, which only its bastion reaches)."""
        def source(h: LabHost) -> str:
            return self.hosts[self.source_host(h.name)].namespace
        targets = [(source(h), h.address, 22) for h in self.hosts.values() if h.has_sshd]
        targets += [(source(h), h.address, LISTEN_PORT) for h in self.hosts.values() if h.has_listener]
        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            return all(pool.map(lambda t: answers(t[0], t[1], t[2], timeout), targets))

    def _prepare_files(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "fleet").write_text(f"{self.fleet}\n", encoding="ascii")
        (self.state_dir / "sites").write_text(f"{self.sites}\n", encoding="ascii")
        for host in self.specs:
            d = self.host_dir(host)
            (d / "home").mkdir(parents=True, exist_ok=True)
            for disk in ("etc", "homes"):  # the host's /etc upper layer and /home (agent.lab.sshd): start clean
                if (d / disk).exists():
                    shutil.rmtree(d / disk)
            for log in d.glob("*.log"):
                log.unlink()
        sshd.generate_keys([(self.agent_key, f"lab-agent@{self.prefix}")] +
                           [(self.host_dir(h) / "ssh_host_ed25519_key", f"{h}@{self.prefix}")
                            for h, spec in self.specs.items() if spec.sshd])
        pub = self.agent_key.with_name("agent_key.pub")
        for host, spec in self.specs.items():
            if spec.sshd:
                d = self.host_dir(host)
                (d / "sshd_config").write_text(
                    sshd.sshd_config(d / "ssh_host_ed25519_key", d / "sshd.pid", pub, spec.login), encoding="ascii")
                if spec.login == "sudo":
                    sshd.write_privilege_files(d)

    def _start_sshd(self, host: str) -> None:
        spec, d, ns = self.specs[host], self.host_dir(host), self.hosts[host].namespace
        procs.start_detached(sshd.sshd_start_argv(ns, host, d / "home", d / "sshd_config", d / "sshd.log",
                                                  hide_nft=not spec.nft, host_dir=d, login=spec.login,
                                                  agent_pub=self.agent_key.with_name("agent_key.pub")),
                             d / "start.log")

    def _start_daemons(self) -> None:
        for host, spec in self.specs.items():
            d, ns = self.host_dir(host), self.hosts[host].namespace
            if spec.sshd:
                self._start_sshd(host)
            if spec.listener:
                procs.start_detached(["nsenter", f"--net={netns.NETNS_DIR / ns}", "--", sys.executable, "-I",
                                      "-S", str(_ECHO), "0.0.0.0", str(LISTEN_PORT), str(d / "echo.pid")],
                                     d / "echo.log")

    def _log_tail(self) -> str:
        parts = []
        for log in sorted(self.state_dir.glob("hosts/*/*.log")):
            text = log.read_text(errors="replace").strip()
            if text:
                parts.append(f"{log.parent.name}/{log.name}: {text[-300:]}")
        return "; ".join(parts) or "no daemon logged an error (timeout)"

    # configuration ---------------------------------------------------------------------------------------
    def write_config(self) -> Path:
        """Write known_hosts, ``agent.yaml`` and ``inventory.yaml`` for this lab; return the agent.yaml path."""
        if not self.agent_key.exists():
            self._prepare_files()
        signing_key = self.state_dir / "audit-signing.key"
        if not signing_key.exists():  # the lab's audit log is signed, as a real deployment's should be
            from agent.audit.keys import generate_keypair
            generate_keypair(signing_key)
        entries = [(address, self.host_dir(h) / "ssh_host_ed25519_key.pub")
                   for h, spec in self.specs.items() if spec.sshd for address in self.hosts[h].addresses]
        text = sshd.known_hosts_lines(entries)
        tmp = self.known_hosts.with_name("known_hosts.tmp")
        tmp.write_text(text, encoding="ascii")
        tmp.replace(self.known_hosts)
        return labconfig.write(self.repo, self.config_dir, self.state_dir, self.prefix,
                               fleet_names(self.fleet, self.sites), self.site_of())

    # using the lab ---------------------------------------------------------------------------------------
    def _host(self, host: str) -> LabHost:
        try:
            return self.hosts[host]
        except KeyError:
            raise LabError(f"no lab host {host!r}; hosts are {', '.join(self.hosts)}") from None

    def _enter_argv(self, host: LabHost) -> list[str]:
        """nsenter prefix reaching ``host``: its sshd's net, mount and UTS namespaces, else its netns."""
        path = netns.NETNS_DIR / host.namespace
        if not path.exists():
            raise LabError(f"lab {self.prefix!r} is not up (namespace {host.namespace} missing): run lab up")
        if not host.has_sshd:
            return ["nsenter", f"--net={path}", "--"]
        pid = procs.read_pid(self.host_dir(host.name) / "sshd.pid")
        if pid is None or not procs.is_alive(pid) or procs.net_ns_inode(pid) != os.stat(path).st_ino:
            raise LabError(f"sshd of lab host {host.name!r} is not running: run lab up")
        return ["nsenter", "-t", str(pid), "-n", "-m", "-u", "--"]

    def exec(self, host: str, argv: list[str], *, input: str | None = None, timeout: float = 10,
             check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on lab host ``host`` (its network, and mount/UTS namespaces where it has them)."""
        target = self._host(host)
        env = {"PATH": netns.SBIN_PATH, "HOME": "/root", "LC_ALL": "C"}
        result = subprocess.run(self._enter_argv(target) + list(argv), input=input, capture_output=True,
                                text=True, timeout=timeout, env=env, check=False)
        result.args = list(argv)
        if check and result.returncode != 0:
            raise LabCommandError(host, result)
        return result

    def enter(self, host: str) -> contextlib.AbstractContextManager[None]:
        """Move the *calling thread* into ``host``'s network namespace for a ``with`` block (sockets made there
        stay there): e.g. ``with lab.enter("mgmt"): client.connect(...)`` acts from the management host."""
        target = self._host(host)
        if not netns.exists(target.namespace):
            raise LabError(f"lab {self.prefix!r} is not up (namespace {target.namespace} missing): run lab up")
        return netns.enter(target.namespace)

    def probe(self, matrix: Sequence[tuple[str, str, int]] | None = None, *, timeout: float = 1.0) -> ProbeResult:
        """TCP-connect checks (``src``, ``dst``, ``port``) in parallel; default: ``probe.DEFAULT_MATRIX``."""
        for src, dst, _ in matrix or DEFAULT_MATRIX:
            self._host(src), self._host(dst)
        for ns in self.namespaces:
            if not netns.exists(ns):
                raise LabError(f"lab {self.prefix!r} is not up (namespace {ns} missing): run lab up")
        return run_probe(matrix or DEFAULT_MATRIX, {h.name: h.namespace for h in self.hosts.values()},
                         {h.name: h.address for h in self.hosts.values()}, timeout)

    def open_session(self, src: str, dst: str, port: int = LISTEN_PORT, *, timeout: float = 2.0) -> LiveConnection:
        """Open a long-lived TCP connection ``src`` → ``dst:port`` (8080 echoes, so ``alive()`` works)."""
        source, dest = self._host(src), self._host(dst)
        try:
            sock = connect_from(source.namespace, dest.address, port, timeout)
        except (TimeoutError, OSError) as exc:
            raise LabError(f"cannot open a connection {src} -> {dst}:{port}: {exc}") from exc
        return LiveConnection(src, dst, port, sock)

    def reboot(self, host: str) -> None:
        """What a reboot does to ``host``, short of running its boot units (issue 14: isolation that survives a
        reboot): every process of the host's mount namespace (sshd, its sessions, a dead-man timer) is killed, the
        kernel's state in its network namespace is lost (nftables/iptables ruleset, tracked flows, IPv6 sysctls
        back to their defaults), /run starts empty; /etc (its overlay's upper layer, the "disk") is kept. sshd is
        started again as at boot. The caller then runs what the host's enabled units would run."""
        target = self._host(host)
        if not target.has_sshd:
            raise LabError(f"lab host {host!r} has no sshd (no mount namespace of its own) to reboot")
        pid_file = self.host_dir(host) / "sshd.pid"
        pid = procs.read_pid(pid_file)
        if pid is None or not procs.is_alive(pid):
            raise LabError(f"sshd of lab host {host!r} is not running: run lab up")
        power.power_off(host, pid)
        pid_file.unlink(missing_ok=True)
        netns.run(target.namespace, ["sh", "-c", power.BOOT_KERNEL])
        self._start_sshd(host)
        if not wait_until(lambda: (p := procs.read_pid(pid_file)) is not None and procs.is_alive(p), timeout=10):
            raise LabError(f"sshd of {host!r} did not come back after the reboot: {self._log_tail()}")
        if not answers(self.hosts[self.source_host(host)].namespace, target.address, 22, 10):
            raise LabError(f"sshd of {host!r} does not answer after the reboot")

    def reset(self) -> None:
        """Restore the baseline on every host: no nftables/iptables rules, no tracked connections."""
        with ThreadPoolExecutor(max_workers=len(self.hosts)) as pool:
            list(pool.map(lambda h: self.exec(h, ["sh", "-c", power.BASELINE], check=False), self.hosts))

    @property
    def management_address(self) -> str:
        return MGMT_ADDRESS

    def __repr__(self) -> str:
        return f"Lab(prefix={self.prefix!r}, state_dir={str(self.state_dir)!r})"
