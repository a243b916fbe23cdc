"""Shell functions every command sent to a Linux host starts with (after ``priv`` and ``D``, :mod:`.privilege`).

Why: the host lock, the dead-man check (which timer is live), the wait for a new timer and the state read (tool,
ruleset, timer, persistence, firewall managers) are needed by most commands — the state read up to three times
in one isolation, the dead-man check in every locked section. Inlined, each copy travelled again (and was shown
in the dry-run preview and recorded in the audit log with every rehearsed plan: ~17 KB of shell per isolate
preview, issue 16). Defined once in the prelude, commands call ``ca_lock``, ``ca_live``, ``ca_wait`` and
``ca_state``; what runs on the host is the same text: a POSIX function runs in the calling shell, so variables it
sets are the caller's, ``exec 9>>`` in ``ca_lock`` opens the caller's descriptor and its ``exit`` ends the calling
shell, exactly as inline (tests/unit/test_ssh_linux_preview.py runs both forms). The preview shows the prelude,
definitions included, once (:mod:`.preview`).
"""

from __future__ import annotations

from connectors.ssh_linux import deadman, persist, rules

__all__ = ["DEFINITIONS", "READ_STATE", "STATE_SCRIPT"]

# The body of ``ca_state``: what :func:`.state.parse_state` parses. Static text, no interpolated values.
STATE_SCRIPT = (
    deadman.status_command() + "; "
    'echo "@@SSH $SSH_CONNECTION"; '
    # Our table as JSON only when the ruleset names it: one nft run fewer where it is absent (before isolating,
    # after releasing), the same output either way ("list table" of a missing table prints nothing to stdout).
    "if command -v nft >/dev/null 2>&1; then echo '@@TOOL nft'; echo '@@RULESET'; "
    "ca_r=$(priv nft list ruleset 2>&1); ca_c=$?; [ -z \"$ca_r\" ] || printf '%s\\n' \"$ca_r\"; "
    "[ $ca_c -eq 0 ] || echo '@@FAILED nft list ruleset'; "
    f"echo '@@TABLE'; case \"$ca_r\" in *'table {rules.TABLE} {{'*) priv nft -j list table {rules.TABLE} 2>/dev/null;; "
    "esac; "
    "else echo '@@TOOL iptables'; echo '@@RULESET'; priv iptables-save 2>&1 || echo '@@FAILED iptables-save'; "
    "if command -v ip6tables-save >/dev/null 2>&1; then echo '@@RULESET6'; "
    "priv ip6tables-save 2>&1 || echo '@@FAILED ip6tables-save'; "
    "else echo '@@NO_IP6TABLES'; echo '@@IPV6'; for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do "
    '[ -r "$f" ] || continue; n=${f#/proc/sys/net/ipv6/conf/}; n=${n%/disable_ipv6}; v=; read -r v < "$f"; '
    'echo "$n $v"; done; fi; fi; ' + persist.state_script() +
    # firewalld and ufw: what a reload of theirs does to our rules (:mod:`.fwmanagers`). firewalld runs: its unit
    # is active (systemd starts it with --nofork --nopid, so there is no PID file; /run/systemd/system exists only
    # when systemd is PID 1, sd_booted(3)) or, started by hand, its PID file /run/firewalld.pid names a live
    # process; then the backend it was configured with. ufw: enabled in ufw.conf, and whether it manages the
    # builtin chains (/etc/default/ufw). "ENABLED=yes" at the start of a line, as ``grep '^ENABLED=yes'`` matched,
    # read with shell builtins: no process per read (Debian installs ufw.conf with ufw disabled).
    "echo '@@FWMGR'; fw=; if [ -d /run/systemd/system ]; then systemctl is-active --quiet firewalld.service "
    "2>/dev/null && fw=1; fi; fp=; { read -r fp < /run/firewalld.pid; } 2>/dev/null; case \"$fp\" in "
    "''|*[!0-9]*) ;; *) [ -d /proc/$fp ] && fw=1;; esac; if [ -n \"$fw\" ]; then echo \"firewalld "
    "$(sed -n 's/^FirewallBackend=//p' /etc/firewalld/firewalld.conf 2>/dev/null | tail -n 1)\"; fi; "
    "ca_u=; if [ -f /etc/ufw/ufw.conf ]; then while IFS= read -r ca_l || [ -n \"$ca_l\" ]; do "
    "case \"$ca_l\" in ENABLED=yes*) ca_u=1;; esac; done < /etc/ufw/ufw.conf; fi 2>/dev/null; "
    "if [ -n \"$ca_u\" ]; then "
    "echo \"ufw $(sed -n 's/^MANAGE_BUILTINS=//p' /etc/default/ufw 2>/dev/null | tail -n 1)\"; fi; true")

READ_STATE = "ca_state"  # the command that prints the state sections (its body is STATE_SCRIPT)

DEFINITIONS = (f"ca_lock() {{ {deadman.LOCK_BODY}}}; ca_live() {{ {deadman.LIVE_BODY}}}; "
               f"ca_wait() {{ {deadman.WAIT_BODY}}}; ca_state() {{ {STATE_SCRIPT}; }}; ")
