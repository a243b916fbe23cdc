"""Per-host OpenSSH servers for the lab: keys, configuration and the start command.

Why each piece (LAB.md): sshd runs in the host's network namespace *and* a private mount + UTS namespace with a
tmpfs on /run (sshd needs /run/sshd; hosts must not share PID files), an empty HOME bound over /root (the
machine's shell start-up files cost seconds per command), per-host ed25519 host keys pinned by IP in a
known_hosts file, and curve25519 key exchange (OpenSSH's default sntrup761 costs ≈130 ms per connection).
On ``legacy`` the ``nft`` binary is hidden so connectors take their iptables fallback: /usr/sbin is overlaid with
a tmpfs of symlinks to the real directory minus ``nft``, so ``command -v nft`` fails in every shell.
Every sshd host has its own /etc: an overlay on the machine's /etc whose upper layer is the host's state directory
(``hosts/NAME/etc``, wiped by ``lab up``), so what a connector writes there (issue 14: a unit that re-applies the
isolation at boot) never reaches the machine's /etc and survives :meth:`~agent.lab.Lab.reboot` like a disk would.
A ``login="sudo"`` host (issue 14: real fleets forbid root SSH logins) refuses root (``PermitRootLogin no``,
``AllowUsers``) and has one account, :data:`~agent.lab.topology.SUDO_ACCOUNT`, whose sudoers and doas.conf rules are
the least-privilege snippets of :mod:`connectors.ssh_linux.privilege`. The account exists only inside the host's
mount namespace (its /etc overlay; /home is the host's ``hosts/NAME/homes``, kept across a reboot like a disk, so
the service account's dead-man record outlives the timer process as it would on a real host).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from agent.lab.topology import SUDO_ACCOUNT, SUDO_UID

__all__ = ["HIDDEN_SBIN", "generate_keys", "known_hosts_lines", "sshd_config", "sshd_start_argv",
           "write_privilege_files"]

HIDDEN_SBIN = "/run/lab-sbin"   # where legacy's real /usr/sbin stays reachable for the lab's own clean-up

# Positional arguments, never interpolated: $1 home dir, $2 host name, $3 sshd config, $4 "hide-nft" or "keep",
# $5 sshd log, $6 "sudo" or "root" (the login), $7 the host's state dir (sudoers, doas.conf), $8 the agent's
# public key, $9 the sudo account, ${10} its uid.
_SETUP = """set -e
mount -t tmpfs -o mode=0755,size=16m lab-run /run
mkdir -p /run/sshd
mount --bind "$1" /root
hostname "$2"
mkdir -p "$7/etc/up" "$7/etc/work"
mount -t overlay lab-etc -o lowerdir=/etc,upperdir="$7/etc/up",workdir="$7/etc/work" /etc
if [ "$6" = sudo ] && ! grep -q "^$9:" /etc/passwd; then
  echo "$9:x:${10}:${10}:lab sudo account:/home/$9:/bin/sh" >> /etc/passwd
  echo "$9:x:${10}:" >> /etc/group
  echo "$9:*:19000:0:99999:7:::" >> /etc/shadow
  printf '127.0.1.1 %s\n' "$2" >> /etc/hosts
fi
if [ "$6" = sudo ]; then
  rm -rf /etc/sudoers.d
  install -o root -g root -m 0440 "$7/sudoers" /etc/sudoers
  install -o root -g root -m 0400 "$7/doas.conf" /etc/doas.conf
  mkdir -p "$7/homes"
  mount --bind "$7/homes" /home
  install -d -o "${10}" -g "${10}" -m 0700 "/home/$9" "/home/$9/.ssh"
  install -o "${10}" -g "${10}" -m 0600 "$8" "/home/$9/.ssh/authorized_keys"
fi
if [ "$4" = hide-nft ]; then
  mkdir -p /run/lab-sbin
  mount --bind /usr/sbin /run/lab-sbin
  mount -t tmpfs -o mode=0755,size=1m lab-sbin /usr/sbin
  ln -s /run/lab-sbin/* /usr/sbin/
  rm -f /usr/sbin/nft
fi
exec /usr/sbin/sshd -D -f "$3" -E "$5"
"""


def generate_keys(paths: Iterable[tuple[Path, str]]) -> None:
    """Create missing ed25519 key pairs (``path``, ``path.pub``) in parallel; existing keys are kept."""
    procs = []
    for path, comment in paths:
        if path.exists() and path.with_name(path.name + ".pub").exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        procs.append((path, subprocess.Popen(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    for path, proc in procs:
        _, err = proc.communicate(timeout=20)
        if proc.returncode != 0:
            raise RuntimeError(f"ssh-keygen for {path} failed: {err.decode(errors='replace').strip()}")
        path.chmod(0o600)


def write_privilege_files(host_dir: Path) -> None:
    """The sudoers and doas.conf a ``login="sudo"`` host installs (the documented least-privilege snippets)."""
    from connectors.ssh_linux.privilege import doas_conf, sudoers_snippet
    (host_dir / "sudoers").write_text(sudoers_snippet(SUDO_ACCOUNT), encoding="ascii")
    (host_dir / "doas.conf").write_text(doas_conf(SUDO_ACCOUNT), encoding="ascii")


def sshd_config(host_key: Path, pid_file: Path, authorized_keys: Path, login: str = "root") -> str:
    """The sshd_config text of one lab host (key-only root login, fast KEX, quiet, no PAM, no DNS); a ``sudo``
    host refuses root altogether and admits only the sudo account, with its own authorized_keys."""
    if login == "sudo":
        # sshd_config(5): PermitRootLogin no; AllowUsers: "login is allowed only for user names that match".
        access = ["PermitRootLogin no", f"AllowUsers {SUDO_ACCOUNT}", "AuthorizedKeysFile .ssh/authorized_keys"]
    else:
        access = [f"AuthorizedKeysFile {authorized_keys}", "PermitRootLogin prohibit-password"]
    return "\n".join([
        "Port 22",
        "AddressFamily inet",
        "ListenAddress 0.0.0.0",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        *access,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org",
        "MaxStartups 200",
        "MaxSessions 64",
        "LogLevel ERROR",
        "Subsystem sftp internal-sftp",
        "",
    ])


def sshd_start_argv(namespace: str, host: str, home: Path, config: Path, log: Path, hide_nft: bool,
                    host_dir: Path, login: str = "root", agent_pub: Path | None = None) -> list[str]:
    """argv that starts sshd for ``host`` inside ``namespace`` plus private mount and UTS namespaces."""
    return ["ip", "netns", "exec", namespace, "unshare", "--mount", "--uts", "--propagation", "private",
            "sh", "-c", _SETUP, "lab-sshd", str(home), host, str(config), "hide-nft" if hide_nft else "keep",
            str(log), login, str(host_dir), str(agent_pub or ""), SUDO_ACCOUNT, str(SUDO_UID)]


def known_hosts_lines(entries: Iterable[tuple[str, Path]]) -> str:
    """known_hosts text pinning each (address, host public key file) pair."""
    lines = []
    for address, pub in entries:
        keytype, key = pub.read_text(encoding="ascii").split()[:2]
        lines.append(f"{address} {keytype} {key}")
    return "\n".join(lines) + "\n"
