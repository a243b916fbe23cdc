"""How commands get root on a host: directly (root login), through ``sudo -n`` or through ``doas -n``.

Why per command and not ``sudo sh -c <script>``: a sudoers rule that allows a shell allows everything. Real fleets
forbid root SSH logins and grant the service account a short, documented list of commands (docs/linux-hosts.md has
the sudoers and doas.conf snippets). So every script here runs as the login account, and only the commands that
need privileges are called through the shell function ``priv`` defined by :func:`prelude`:

- ``root``: ``priv() { "$@"; }``.
- ``sudo``: ``sudo -n -- /abs/path args``. ``-n`` (sudo(8): "non-interactive: avoid prompting the user for input
  of any kind; if a password is required for the command to run, sudo will display an error message and exit")
  turns a missing NOPASSWD rule into an immediate, readable failure instead of a hang on a password prompt. The
  absolute path is what a sudoers ``Cmnd_List`` matches (sudoers(5): "a fully qualified path name").
- ``doas``: ``doas -n /abs/path args``. doas.conf(5): "cmd command ... Be advised that it's best to specify
  absolute paths. If a relative path is specified, only a restricted PATH will be searched", and the rule's
  ``cmd`` is compared with the command as given, so the path is resolved first.

The management-address check keeps working: ``SSH_CONNECTION`` is read by the login shell itself, never through
sudo (which resets the environment, sudoers(5) ``env_reset``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from connectors.errors import InvalidInput
from connectors.ssh_linux import persist as _P
from connectors.ssh_linux.hostfuncs import DEFINITIONS

__all__ = ["ENV", "STATE_DIRS", "Privilege", "doas_conf", "parse_privilege", "prelude", "priv_definition",
           "state_dir_expr", "sudoers_snippet"]

Privilege = Literal["root", "sudo", "doas"]

# Every command runs with a known PATH and locale: sbin may be missing from a non-login PATH, and parsing needs C.
# Sent first, before :func:`prelude` (the preview shows both, as sent).
ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; LC_ALL=C; export PATH LC_ALL; "

_DEFS: dict[str, str] = {
    "root": 'priv() { "$@"; }; ',
    # ``command -v`` gives the absolute path the sudoers/doas.conf rules name; an unknown command keeps its name
    # so the error message says which one is missing.
    "sudo": 'priv() { c=$(command -v "$1") || c=$1; shift; sudo -n -- "$c" "$@"; }; ',
    "doas": 'priv() { c=$(command -v "$1") || c=$1; shift; doas -n "$c" "$@"; }; ',
}

# Where the dead-man timer keeps its PID file and the per-host lock. root: /run (a tmpfs, empty after a reboot).
# A sudo/doas account cannot write /run, so its own home directory (mode 0700) is used; a PID file that survives a
# reboot there is harmless because a PID is only trusted when /proc/PID/cmdline names the timer and its token.
STATE_DIRS: dict[str, str] = {"root": "/run/containment-agent", "sudo": "$HOME/.containment-agent",
                              "doas": "$HOME/.containment-agent"}


def parse_privilege(options: Mapping[str, Any], username: str | None = None) -> Privilege:
    """``options: {sudo: true}`` or ``{doas: true}`` from the inventory; neither means a root login.

    Raises :class:`InvalidInput` naming the option for non-boolean values or both set at once.
    """
    chosen: list[Privilege] = []
    for key in ("sudo", "doas"):
        value = options.get(key, False)
        if not isinstance(value, bool):
            raise InvalidInput(f"options.{key}: {value!r} must be true or false", connector="ssh_linux",
                               detail={"field": f"options.{key}"})
        if value:
            chosen.append("sudo" if key == "sudo" else "doas")
    if len(chosen) > 1:
        raise InvalidInput("options: sudo and doas are both true; choose one", connector="ssh_linux",
                           detail={"field": "options"})
    return chosen[0] if chosen else "root"


def priv_definition(privilege: Privilege) -> str:
    """Shell text defining only ``priv`` (the dead-man timer's own script needs it: it outlives the session)."""
    return _DEFS[privilege]


def prelude(privilege: Privilege) -> str:
    """Shell text defining ``priv``, ``D`` (the agent's state directory on the host) for ``privilege``, and the
    shared functions ``ca_live`` / ``ca_state`` (:mod:`.hostfuncs`)."""
    return _DEFS[privilege] + f'D={state_dir_expr(privilege)}; ' + DEFINITIONS


def state_dir_expr(privilege: Privilege) -> str:
    """The state directory as a shell word (``$HOME`` expanded by the host's shell, never by us)."""
    path = STATE_DIRS[privilege]
    return f'"{path}"' if "$" in path else path


# Least privilege for the service account, as the sudoers(5) and doas.conf(5) rules docs/linux-hosts.md shows and
# the lab's sudo host uses. Commands are matched by absolute path (what ``priv`` resolves). sudoers(5): command
# line arguments are matched as one string and ``*`` matches across word boundaries, so the sysctl rule admits any
# ``.../disable_ipv6`` key and nothing else; doas.conf(5) ``cmd`` without ``args`` admits any arguments.
_COMMANDS = {
    "firewall": ("/usr/sbin/nft", "/usr/sbin/iptables", "/usr/sbin/ip6tables", "/usr/sbin/iptables-save",
                 "/usr/sbin/ip6tables-save", "/usr/sbin/iptables-restore", "/usr/sbin/ip6tables-restore"),
    "flows": ("/usr/bin/ss", "/usr/sbin/conntrack"),
    "ipv6": ("/usr/sbin/sysctl -qw net/ipv6/conf/*/disable_ipv6=0",
             "/usr/sbin/sysctl -qw net/ipv6/conf/*/disable_ipv6=1"),
    "sessions": ("/usr/bin/loginctl terminate-user *", "/usr/bin/pkill -KILL -U *", "/usr/bin/pkill -KILL -u *"),
    # survive_reboot (connectors.ssh_linux.persist): fixed paths only, so these admit nothing else.
    "boot_unit": (f"/usr/bin/mkdir -p {_P.DIR}", f"/usr/bin/mkdir -p {_P.WANTS_DIR}",
                  f"/usr/bin/tee {_P.BOOT_SCRIPT}", f"/usr/bin/tee {_P.UNIT}", f"/usr/bin/ln -sfn {_P.UNIT} {_P.WANTS}",
                  f"/usr/bin/rm -f {_P.WANTS}", f"/usr/bin/rm -f {_P.UNIT}", f"/usr/bin/rm -f {_P.BOOT_SCRIPT}",
                  f"/usr/bin/rmdir {_P.DIR}"),
}


def sudoers_snippet(user: str) -> str:
    """``/etc/sudoers.d/containment-agent`` for ``user`` (NOPASSWD on exactly what the connector runs)."""
    aliases = [f"Cmnd_Alias CA_{kind.upper()} = {', '.join(cmds)}" for kind, cmds in _COMMANDS.items()]
    return "\n".join([
        "# containment-agent service account: only the commands the ssh_linux connector runs through sudo -n",
        (f'Defaults:{user} !requiretty, !lecture, env_reset, secure_path="/usr/local/sbin:/usr/local/bin:'
         '/usr/sbin:/usr/bin:/sbin:/bin"'),
        *aliases,
        f"{user} ALL=(root) NOPASSWD: {', '.join(f'CA_{k.upper()}' for k in _COMMANDS)}",
        ""])


def doas_conf(user: str) -> str:
    """``/etc/doas.conf`` lines for ``user``: one ``permit nopass`` per command (doas cannot wildcard args, so
    commands with a ``*`` are admitted with any arguments); the boot unit's commands are pinned with ``args``
    (doas.conf(5): "args [argument ...] Arguments to command. The command arguments provided by the user need
    to match those specified")."""
    paths = dict.fromkeys(c.split(" ", 1)[0] for kind, cmds in _COMMANDS.items() if kind != "boot_unit"
                          for c in cmds)
    lines = [f"permit nopass {user} as root cmd {p}\n" for p in paths]
    lines += [f"permit nopass {user} as root cmd {c.split(' ', 1)[0]} args {c.split(' ', 1)[1]}\n"
              for c in _COMMANDS["boot_unit"]]
    return "".join(lines)
