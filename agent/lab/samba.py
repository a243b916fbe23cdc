"""A throwaway Samba 4 Active Directory domain controller, for the practice lab and the integration tests.

Why it looks like this (LAB.md, "A real Active Directory domain controller"): provisioning costs ≈ 9 s, so a
provisioned directory is kept as a template next to ``state_dir`` and copied (``cp -a``) on later runs. The DC
runs in its own network namespace (no default route: nothing can leave) *and* a private mount/UTS namespace, so
``/run/samba`` (libwbclient hard-codes it), ``/etc/hosts`` and ``/etc/resolv.conf`` (127.0.0.1) are its own and
two DCs never talk to each other's winbindd. ``dnsupdate``, ``nbt`` and ``wrepl`` are not started. Its TLS
certificate comes from a small EC CA made here, with SANs for the DNS name and the address, so clients validate
it properly (never switch validation off).

Usage (tests)::

    dc = SambaDC("adt-dc", "10.78.0.50", Path("/var/tmp/x/dc"))
    dc.provision(); dc.attach("adt-cl", "10.78.0.10"); dc.start()
    dc.create_user("alice", "Passw0rd-Alice!")   # LDAPS as Administrator
    ...
    dc.teardown()                                 # stop + delete the namespaces it created

``nosync=True`` writes ``ldb:nosync = true`` into smb.conf, as Samba's own selftest does for its DCs: no fsync per
directory write (≈ 6 ms → ≈ 2 ms per modify on this VM). Only what survives an OS crash differs; the default stays
False (lab and tests keep fsync); ``bench/ad_disable.py`` measures both.

Usage (lab, namespace already wired to the bridge by the caller): ``SambaDC("lab-dc", "10.77.0.50", DIR)``,
``provision()``, ``start()`` — ``start`` only creates the namespace when it does not exist.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent.lab import netns, procs
from agent.lab.samba_admin import DirectoryAdmin, SambaError
from agent.lab.tls import generate_ca, issue_server_cert

__all__ = ["SERVICES", "SambaDC", "SambaError", "generate_ca"]

SERVICES = "s3fs, rpc, ldap, cldap, kdc, drepl, winbindd, ntp_signd, kcc"  # no dnsupdate, nbt, wrepl
_STATE_FILE = "samba-dc.json"
_PW_CLASSES = ("ABCDEFGHJKLMNPQRSTUVWXYZ", "abcdefghijkmnopqrstuvwxyz", "23456789", "-_.!%+")


def _random_password(length: int = 20) -> str:
    """A password satisfying AD complexity (all four character classes)."""
    alphabet = "".join(_PW_CLASSES)
    while True:
        pw = "".join(secrets.choice(alphabet) for _ in range(length))
        if all(any(c in cls for c in pw) for cls in _PW_CLASSES):
            return pw


def _env(conf_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = netns.SBIN_PATH + ":" + env.get("PATH", "")
    env["KRB5_CONFIG"] = str(conf_dir / "krb5.conf")
    return env


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise template provisioning between concurrent runs (pytest-xdist, two labs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _descendants_of(root: int) -> set[int]:
    """Live PIDs below ``root`` (smbd and winbindd start their own sessions, so the process group misses them)."""
    return {pid for pid in procs.descendants([root], procs.children_map()) if procs.is_alive(pid)}


class SambaDC(DirectoryAdmin):
    """One Samba AD DC with its state in ``state_dir``; see the module docstring for the life cycle."""

    def __init__(self, namespace: str, address: str, state_dir: Path, realm: str = "LAB.TEST",
                 domain: str = "LAB", *, host_name: str = "dc1", prefix_len: int = 24,
                 nosync: bool = False) -> None:
        self.namespace = namespace
        self.address = str(ipaddress.ip_address(address))
        self.state_dir = Path(state_dir).resolve()
        self.realm = realm.upper()
        self.domain = domain.upper()
        self.host_name = host_name.lower()
        self.prefix_len = prefix_len
        self.nosync = nosync
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: Any = None

    # -- facts for tests and the lab config -------------------------------------------------------------
    @property
    def conf(self) -> Path:
        return self.state_dir / "etc" / "smb.conf"

    def directory_entry(self) -> dict[str, Any]:
        """The inventory ``directories:`` entry (without credentials) describing this DC."""
        return {"address": self.address, "options": {"base_dn": self.base_dn, "server_name": self.server_name,
                                                     "ca_file": str(self.ca_file), "port": 636}}

    # -- state file (lets another process, e.g. ``agent lab down``, tear down) ------------------------------
    def _state(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state_dir / _STATE_FILE).read_text())
            return data
        except (OSError, ValueError):
            return {"pid": None, "owned_namespaces": []}

    def _save_state(self, **changes: Any) -> None:
        state = {**self._state(), **changes}
        (self.state_dir / _STATE_FILE).write_text(json.dumps(state))

    def _own_namespace(self, name: str) -> None:
        if not netns.exists(name):
            netns.add(name)
            owned = self._state()["owned_namespaces"]
            self._save_state(owned_namespaces=sorted({*owned, name}))
        else:
            netns.add(name)  # idempotent: brings lo up

    # -- provisioning -----------------------------------------------------------------------------------
    def _template_dir(self) -> Path:
        version = subprocess.run(["samba", "-V"], capture_output=True, text=True, env=_env(Path("/")),
                                 check=True).stdout.split()[-1]
        return self.state_dir.parent / f".samba-template-{self.realm.lower()}-{self.host_name}-{version}"

    def provision(self) -> None:
        """Copy a provisioned domain into ``state_dir`` (provisioning the template once, ≈ 9 s) and configure it."""
        if not (self.state_dir / ".provisioned").exists():
            template = self._template_dir()
            with _locked(self.state_dir.parent / ".samba-template.lock"):
                if not (template / ".template-ready").exists():
                    self._provision_template(template)
            if self.state_dir.exists():
                shutil.rmtree(self.state_dir)
            subprocess.run(["cp", "-a", str(template), str(self.state_dir)], check=True)
            (self.state_dir / ".template-ready").unlink()
            (self.state_dir / ".provisioned").touch()
        self._write_config()

    def _provision_template(self, template: Path) -> None:
        tmp = template.with_name(template.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True, mode=0o700)
        password = _random_password()
        cmd = ["samba-tool", "domain", "provision", f"--targetdir={tmp}", f"--realm={self.realm}",
               f"--domain={self.domain}", "--server-role=dc", "--dns-backend=NONE", f"--adminpass={password}",
               "--use-rfc2307", f"--host-name={self.host_name}", "--option=dns forwarder = 127.0.0.1"]
        done = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp), check=False)
        if done.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SambaError(f"samba-tool domain provision failed: {done.stderr.replace(password, '***')[-2000:]}")
        pw_file = tmp / "admin.pass"
        pw_file.write_text(password + "\n")
        pw_file.chmod(0o600)
        (tmp / ".template-ready").touch()
        shutil.rmtree(template, ignore_errors=True)
        tmp.rename(template)

    def _write_config(self) -> None:
        d = self.state_dir
        for sub in ("etc", "run", "log", "tls", "cache", "run/ncalrpc", "run/winbindd", "run/ntp_signd"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "run/ntp_signd").chmod(0o750)
        if not (d / "tls" / "key.pem").exists() or not self._cert_matches():
            ca_pem, ca_key = generate_ca(f"Samba lab CA {self.server_name} {secrets.token_hex(4)}")
            cert_pem, key_pem = issue_server_cert(ca_pem, ca_key, self.server_name, self.address)
            key_path = d / "tls" / "key.pem"
            key_path.touch(mode=0o600)
            key_path.chmod(0o600)
            key_path.write_bytes(key_pem)
            (d / "tls" / "cert.pem").write_bytes(cert_pem)
            self.ca_file.write_bytes(ca_pem)
        (d / "etc" / "hosts").write_text(f"127.0.0.1 localhost\n{self.address} {self.server_name} {self.host_name}\n")
        (d / "etc" / "resolv.conf").write_text("nameserver 127.0.0.1\n")
        (d / "etc" / "krb5.conf").write_text(
            f"[libdefaults]\n\tdefault_realm = {self.realm}\n\tdns_lookup_realm = false\n\tdns_lookup_kdc = false\n"
            f"\n[realms]\n{self.realm} = {{\n\tkdc = {self.address}\n\tdefault_domain = {self.realm.lower()}\n}}\n")
        sysvol = d / "state" / "sysvol"
        # Samba's own selftest DCs run with ldb:nosync: no fsync per directory write (durability across an OS crash
        # is what it gives up; a throwaway DC does not need it). Off by default: the lab and tests keep fsync.
        nosync_line = "\tldb:nosync = true\n" if self.nosync else ""
        self.conf.write_text(f"""# written by agent.lab.samba — a lab DC; regenerated on every provision()
[global]
\tnetbios name = {self.host_name.upper()}
\trealm = {self.realm}
\tworkgroup = {self.domain}
\tserver role = active directory domain controller
\tserver services = {SERVICES}
\tinterfaces = lo {self.address}
\tbind interfaces only = yes
\tprivate dir = {d}/private
\tlock directory = {d}
\tstate directory = {d}/state
\tcache directory = {d}/cache
\tbinddns dir = {d}/bind-dns
\tpid directory = {d}/run
\tncalrpc dir = {d}/run/ncalrpc
\twinbindd socket directory = {d}/run/winbindd
\tntp signd socket directory = {d}/run/ntp_signd
\tlog file = {d}/log/samba.log
\tlogging = file
\tmax log size = 10000
\tdns forwarder = 127.0.0.1
\tload printers = no
\tprinting = bsd
\tprintcap name = /dev/null
\tdisable spoolss = yes
\tidmap_ldb:use rfc2307 = yes
{nosync_line}\ttls enabled = yes
\ttls keyfile = {d}/tls/key.pem
\ttls certfile = {d}/tls/cert.pem
\ttls cafile = {d}/tls/ca.pem

[sysvol]
\tpath = {sysvol}
\tread only = No

[netlogon]
\tpath = {sysvol}/{self.realm.lower()}/scripts
\tread only = No
""")

    def _cert_matches(self) -> bool:
        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificate((self.state_dir / "tls" / "cert.pem").read_bytes())
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (OSError, ValueError, x509.ExtensionNotFound):
            return False
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        return self.address in ips and self.server_name in san.get_values_for_type(x509.DNSName)

    # -- network ----------------------------------------------------------------------------------------
    def attach(self, peer_ns: str, peer_address: str, *, dc_ifname: str = "dc0", peer_ifname: str = "ad0") -> None:
        """Create the DC namespace (if absent) and a veth pair to ``peer_ns`` (created if absent); both ends up.

        Call before :meth:`start`: Samba binds only to addresses present when it starts.
        """
        self._own_namespace(self.namespace)
        self._own_namespace(peer_ns)
        netns.ip("link", "add", dc_ifname, "netns", self.namespace, "type", "veth",
                 "peer", "name", peer_ifname, "netns", peer_ns)
        netns.run(self.namespace, ["ip", "addr", "add", f"{self.address}/{self.prefix_len}", "dev", dc_ifname])
        netns.run(self.namespace, ["ip", "link", "set", dc_ifname, "up"])
        netns.run(peer_ns, ["ip", "addr", "add", f"{peer_address}/{self.prefix_len}", "dev", peer_ifname])
        netns.run(peer_ns, ["ip", "link", "set", peer_ifname, "up"])

    # -- life cycle -------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        pid = self._state().get("pid")
        return int(pid) if pid and self._is_ours(int(pid)) else None

    def _is_ours(self, pid: int) -> bool:
        """``pid`` is a live ``samba`` in this DC's network namespace (samba rewrites its cmdline, so not that)."""
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            ours = os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(netns.NETNS_DIR / self.namespace).st_ino
        except OSError:
            return False
        return ours and os.path.basename(exe) == "samba" and procs.is_alive(pid)

    def start(self, timeout: float = 30.0) -> None:
        """Start ``samba`` in the namespace (created if absent) and wait until LDAPS completes a handshake."""
        if self.pid is not None:
            return
        if not (self.state_dir / ".provisioned").exists():
            self.provision()
        self._own_namespace(self.namespace)
        have = netns.run(self.namespace, ["ip", "-o", "addr", "show"]).stdout
        if f" {self.address}/" not in have:
            raise SambaError(f"address {self.address} is not configured in namespace {self.namespace!r}; "
                             f"call attach() or wire the namespace first")
        d = self.state_dir
        for stale in (d / "run").glob("*.pid"):  # a previous run's; samba refuses to start if the PID is reused
            stale.unlink()
        script = (
            "set -e; mount -t tmpfs -o mode=0755 tmpfs /run; mkdir -p /run/samba; mount --bind \"$1/run\" /run/samba;"
            " for f in hosts resolv.conf; do t=$(readlink -m /etc/$f); [ -e \"$t\" ] || { mkdir -p \"${t%/*}\";"
            " : > \"$t\"; }; mount --bind \"$1/etc/$f\" \"$t\"; done; hostname \"$2\";"
            " exec samba -F -s \"$3\" --debug-stdout -d 1"
        )
        argv = ["ip", "netns", "exec", self.namespace, "unshare", "--mount", "--uts", "--propagation", "private",
                "sh", "-c", script, "samba-dc", str(d), self.host_name, str(self.conf)]
        with open(d / "log" / "samba.stdout", "ab") as out:
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                          env=_env(d / "etc"), start_new_session=True)
        self._save_state(pid=self._proc.pid)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise SambaError(f"samba exited with {self._proc.returncode}: {self._log_tail()}")
            try:
                with netns.enter(self.namespace):
                    raw = socket.create_connection((self.address, 636), timeout=1.0)
                with ctx.wrap_socket(raw, server_hostname=self.server_name):
                    return
            except OSError as exc:
                last = exc
                time.sleep(0.1)
        self.stop()
        raise SambaError(f"LDAPS on {self.address}:636 did not answer within {timeout:.0f} s ({last}); "
                         f"{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return (self.state_dir / "log" / "samba.stdout").read_text(errors="replace")[-1500:]
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the DC (only after checking the PID is this DC), then SIGKILL any of its descendants left."""
        self._close_admin()
        pid = self.pid
        if pid is not None:
            family = _descendants_of(pid) | {pid}
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                family |= _descendants_of(pid) if procs.is_alive(pid) else set()
                if self._proc is not None:
                    self._proc.poll()
                if not any(procs.is_alive(p) for p in family):
                    break
                time.sleep(0.05)
            for straggler in sorted(p for p in family if procs.is_alive(p)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(straggler, signal.SIGKILL)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
            self._proc = None
        if self.state_dir.exists():
            self._save_state(pid=None)

    def teardown(self, *, remove_state: bool = False) -> None:
        """Stop the DC, delete the namespaces this object created (idempotent), optionally remove state_dir."""
        self.stop()
        for name in self._state().get("owned_namespaces", []):
            netns.delete(name)
        if self.state_dir.exists():
            self._save_state(owned_namespaces=[])
        if remove_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- directory content ------------------------------------------------------------------------------
    def samba_tool(self, *args: str, timeout: float = 60) -> str:
        """Run ``samba-tool ARGS -s smb.conf`` on the local database; returns stdout, raises with stderr."""
        done = subprocess.run(["samba-tool", *args, "-s", str(self.conf)], capture_output=True, text=True,
                              env=_env(self.state_dir / "etc"), timeout=timeout, check=False)
        if done.returncode != 0:
            raise SambaError(f"samba-tool {args[:2]} failed: {done.stderr.strip()[-1500:]}")
        return done.stdout
