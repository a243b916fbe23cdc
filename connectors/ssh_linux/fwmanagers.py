"""Hosts run by firewalld or ufw (the RHEL and Ubuntu defaults): does their reload drop the agent's isolation?

What each does on ``firewall-cmd --reload`` / restart and ``ufw reload``, from their sources (Debian 12:
firewalld 1.3.3, ufw 0.36.2):

- firewalld, nftables backend (``FirewallBackend=nftables``, the default since 0.6): ``build_flush_rules`` in
  ``firewall/core/nftables.py`` deletes only its own table (``{"delete": {"table": {"family": "inet", "name":
  "firewalld"}}}``). Our ``inet containment_agent`` table is untouched; a drop in any base chain is final, so
  firewalld's accepts cannot reopen the host.
- firewalld, iptables backend: ``build_flush_rules`` in ``firewall/core/ipXtables.py`` runs ``-F``, ``-X`` and
  ``-Z`` on every table: our ``CAGENT_*`` chains and their jumps are gone after a reload. On a host with nft the
  agent uses its own nft table, which iptables commands (iptables-nft or legacy) never touch.
- ufw: ``ufw reload`` is ``ufw_stop`` + ``ufw_start`` in ``/lib/ufw/ufw-init-functions``. With
  ``MANAGE_BUILTINS=no`` (the default in /etc/default/ufw) it deletes only its ``ufw-*`` chains and appends its
  jumps, so our chains and our jump at position 1 stay; with ``MANAGE_BUILTINS=yes`` ``flush_builtins`` runs
  ``iptables -F`` and ``-X``: our chains are gone.

So on the iptables fallback path the two flushing setups are refused before anything is sent (the isolation would
silently disappear at the next reload), with what to change; everywhere else the manager is named in the result
and the lab tests reload the real daemons and probe the host from outside afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.ssh_linux.state import FirewallState

__all__ = ["describe", "reload_hazard"]


def reload_hazard(st: FirewallState) -> str:
    """Why a reload of the host's firewall manager would drop our rules (empty: it would not)."""
    if st.tool == "nft":
        return ""
    backend = st.managers.get("firewalld")
    if backend is not None and backend == "iptables":
        return ("firewalld runs with FirewallBackend=iptables, which flushes and deletes every iptables chain on "
                "each reload or restart (firewalld ipXtables.py build_flush_rules: -F, -X, -Z per table): the "
                "isolation would silently disappear at the next `firewall-cmd --reload`. Install nftables on the "
                "host (the agent then uses its own nft table, which firewalld leaves alone) or set "
                "FirewallBackend=nftables")
    if st.managers.get("ufw") == "yes":
        return ("ufw runs with MANAGE_BUILTINS=yes, which flushes every iptables chain on each `ufw reload` "
                "(/lib/ufw/ufw-init-functions flush_builtins: iptables -F, -X): the isolation would silently "
                "disappear. Install nftables on the host (the agent then uses its own nft table) or set "
                "MANAGE_BUILTINS=no in /etc/default/ufw")
    return ""


def describe(st: FirewallState) -> dict[str, str]:
    """For the result: which manager runs and why its reload keeps the isolation."""
    out: dict[str, str] = {}
    if "firewalld" in st.managers:
        backend = st.managers["firewalld"] or "nftables"
        out["firewalld"] = (f"running ({backend} backend): a reload deletes only its own table inet firewalld"
                            if st.tool == "nft" or backend == "nftables" else f"running ({backend} backend)")
        if st.tool == "nft" and backend == "iptables":
            out["firewalld"] = "running (iptables backend): its flush touches iptables tables, not our nft table"
    if "ufw" in st.managers:
        out["ufw"] = ("enabled: a reload rewrites only its ufw-* chains" if st.managers["ufw"] != "yes" or
                      st.tool == "nft" else "enabled (MANAGE_BUILTINS=yes)")
    return out
