"""Building and deleting the lab's namespaces, links, addresses, routes and sysctls.

Why batches: one ``ip -batch`` in the root namespace creates every namespace and veth pair (each veth is created
directly inside its two namespaces, so the root namespace never sees a lab interface), then one ``ip -n NS -batch``
per namespace, run in parallel, configures it. Sysctls are written in-process from a thread that entered the
namespace (``/proc/sys/net`` follows the opener's namespace). Bridge netfilter is switched off in the switch only.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

from agent.lab import netns
from agent.lab.topology import BRIDGE, SWITCH, HostSpec, namespace_name, switch_port_name, worker_host

__all__ = ["build", "delete", "namespace_names"]

_BRIDGE_NF = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables")


def namespace_names(prefix: str, hosts: Mapping[str, HostSpec]) -> list[str]:
    """Every namespace the lab ``prefix`` owns: the switch and one per host."""
    return [namespace_name(prefix, SWITCH)] + [namespace_name(prefix, h) for h in hosts]


def _batch(lines: list[str], namespace: str | None = None) -> subprocess.Popen[str]:
    argv = ["ip"] + (["-n", namespace] if namespace else []) + ["-batch", "-"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={"PATH": netns.SBIN_PATH})
    assert proc.stdin is not None
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.close()
    proc.stdin = None  # written and closed: communicate() must not touch it again
    return proc


def _finish(proc: subprocess.Popen[str], what: str) -> None:
    _, err = proc.communicate(timeout=20)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {err.strip()}")


def _root_lines(prefix: str, hosts: Mapping[str, HostSpec]) -> list[str]:
    switch = namespace_name(prefix, SWITCH)
    lines = [f"netns add {ns}" for ns in namespace_names(prefix, hosts)]
    # Explicit, distinct interface indexes on the two ends of every veth: when a veth's index equals its peer's
    # (easy in fresh namespaces), the kernel's linkwatch treats its carrier change as non-urgent and may delay
    # it by up to a second, and the bridge port only starts forwarding after that.
    for position, name in enumerate(h for h, spec in hosts.items() if spec.segment == "lan"):
        lines.append(f"link add eth0 index {100 + position} netns {namespace_name(prefix, name)} type veth "
                     f"peer name {switch_port_name(prefix, name)} index {300 + position} netns {switch}")
    lines.append(f"link add eth1 index 30 netns {namespace_name(prefix, 'fw')} type veth "
                 f"peer name eth0 index 31 netns {namespace_name(prefix, 'attacker')}")
    if "dmz" in hosts:  # a link of its own behind fw: the bastion is the only way in
        lines.append(f"link add eth2 index 32 netns {namespace_name(prefix, 'fw')} type veth "
                     f"peer name eth0 index 33 netns {namespace_name(prefix, 'dmz')}")
    # `lab up --sites K`: each site host on its site's bridge; each site's worker host with a second leg there
    for position, name in enumerate(h for h, spec in hosts.items() if spec.segment.startswith("site")):
        lines.append(f"link add eth0 index {1000 + position} netns {namespace_name(prefix, name)} type veth "
                     f"peer name {switch_port_name(prefix, name)} index {2000 + position} netns {switch}")
    for k, site in enumerate(_sites(hosts), 1):
        worker = worker_host(site)
        lines.append(f"link add eth1 index {3000 + k} netns {namespace_name(prefix, worker)} type veth "
                     f"peer name {_site_port(prefix, worker)} index {3100 + k} netns {switch}")
    return lines


def _sites(hosts: Mapping[str, HostSpec]) -> list[str]:
    return sorted({spec.segment for spec in hosts.values() if spec.segment.startswith("site")},
                  key=lambda s: int(s.removeprefix("site")))


def _site_port(prefix: str, worker: str) -> str:
    return f"{prefix}-{worker}s"[:15]


def _switch_lines(prefix: str, hosts: Mapping[str, HostSpec]) -> list[str]:
    lines = ["link set lo up", f"link add {BRIDGE} type bridge stp_state 0 forward_delay 0",
             f"link set {BRIDGE} up"]
    for name, spec in hosts.items():
        if spec.segment == "lan":
            port = switch_port_name(prefix, name)
            lines += [f"link set {port} master {BRIDGE}", f"link set {port} up"]
    for site in _sites(hosts):  # a bridge per site segment, nothing routed to it
        bridge = "br" + site
        lines += [f"link add {bridge} type bridge stp_state 0 forward_delay 0", f"link set {bridge} up"]
        ports = [switch_port_name(prefix, n) for n, spec in hosts.items() if spec.segment == site]
        ports.append(_site_port(prefix, worker_host(site)))
        for port in ports:
            lines += [f"link set {port} master {bridge}", f"link set {port} up"]
    return lines


def _host_lines(spec: HostSpec) -> list[str]:
    lines = ["link set lo up"]
    for ifname, cidr in spec.interfaces:
        lines += [f"link set {ifname} up", f"addr add {cidr} dev {ifname}"]
    if spec.gateway:
        lines.append(f"route add default via {spec.gateway}")
    return lines


def _sysctl(namespace: str, key: str, value: str, optional: bool = False) -> None:
    path = Path("/proc/sys") / key
    with netns.enter(namespace):
        if optional and not path.exists():
            return
        with open(path, "w", encoding="ascii") as fh:
            fh.write(value)


def build(prefix: str, hosts: Mapping[str, HostSpec]) -> None:
    """Create the lab's namespaces and wire them up (the caller made sure none of them exists)."""
    _finish(_batch(_root_lines(prefix, hosts)), "creating the lab namespaces and links")
    procs = [(_batch(_switch_lines(prefix, hosts), namespace_name(prefix, SWITCH)), "configuring the switch")]
    procs += [(_batch(_host_lines(spec), namespace_name(prefix, h)), f"configuring {h}") for h, spec in hosts.items()]
    for proc, what in procs:
        _finish(proc, what)
    for key in _BRIDGE_NF:
        _sysctl(namespace_name(prefix, SWITCH), f"net/bridge/{key}", "0", optional=True)
    for name, spec in hosts.items():
        if spec.router:
            _sysctl(namespace_name(prefix, name), "net/ipv4/ip_forward", "1")


def delete(prefix: str, hosts: Mapping[str, HostSpec]) -> list[str]:
    """Delete the lab's namespaces that exist; return the names still present afterwards (should be none).

    Fleet namespaces (``<prefix>-hNN``) are found by name too, so a lab whose recorded size was lost still goes.
    """
    fleet = re.compile(rf"^{re.escape(prefix)}-(h\d{{2,3}}|wk\d|obs\d)$")
    extra = sorted(p.name for p in netns.NETNS_DIR.glob(f"{prefix}-*") if fleet.match(p.name)) \
        if netns.NETNS_DIR.exists() else []
    names = list(dict.fromkeys(namespace_names(prefix, hosts) + extra))
    present = [ns for ns in names if netns.exists(ns)]
    if present:
        proc = _batch([f"netns delete {ns}" for ns in present])
        proc.communicate(timeout=20)
    return [ns for ns in names if netns.exists(ns)]
