"""One :class:`~tests.conformance.connector_suite.Rig` per registered connector: its cheapest real server or double.

Each builder is a generator (set up, yield the rig, tear down) taking the pytest request, the registry (so the
connector is the one its entry point loads) and a temporary folder. Add one here when you add a connector:
``tests/integration/conformance`` fails for a registered connector without a rig.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.registry import Registry
from connectors.types import ConnectorContext, Credentials, Secret, Target
from tests.conformance.connector_suite import Rig

__all__ = ["RIGS"]

RigBuilder = Callable[[pytest.FixtureRequest, Registry, Path], Iterator[Rig]]
# a host connector gets no protected subject: protection of hosts is the inventory's, checked by the planner
_HOSTS_PROTECTED = ("hosts are protected by the inventory: the planner refuses them before any connector is asked "
                    "(tests/unit/test_engine.py::test_protected_host_refused_before_connecting)")


# -- toybox: the third-party plugin; the device is a JSON file and its log --------------------------------------
def toybox(request: pytest.FixtureRequest, registry: Registry, tmp: Path) -> Iterator[Rig]:
    state = tmp / "toybox.json"
    log = tmp / "toybox.json.log"
    target = Target("toy1", "device", "198.51.100.1", "toybox",
                    options={"state_file": str(state), "password": "t0ybox-s3cret"})
    args = {"addresses": ["203.0.113.9", "198.51.100.0/28"], "protected": ["192.0.2.10/32", "198.51.100.1/32"]}
    yield Rig(registry.get("toybox"), target, Credentials("ir", Secret("t0ybox-s3cret")), ConnectorContext(),
              "block_ip", {**args, "addresses": ["203.0.113.9"]},
              state=lambda: state.read_text() if state.exists() else '{"blocked": []}',
              sent=lambda: log.read_text().splitlines() if log.exists() else [],
              drop_after_write=lambda: _touch(tmp / "toybox.json.drop"),
              refused=[(target, {**args, "addresses": ["192.0.2.0/24"]}),
                       (target, {**args, "addresses": ["198.51.100.1"]})],
              secrets=["t0ybox-s3cret"],
              unreachable=dataclasses.replace(target, options={**target.options,
                                                               "state_file": str(tmp / "gone" / "toybox.json")}))


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _touch(path: Path) -> Iterator[None]:
    path.touch()
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


# -- firewall: the Cisco ASA CLI simulator over real SSH (every dialect runs firewall_suite.py as well) ---------
def firewall(request: pytest.FixtureRequest, registry: Registry, tmp: Path) -> Iterator[Rig]:
    from tests.doubles.vendor_cli import SIM_OPTIONS, make_simulator, new_host_key, write_known_hosts
    key = new_host_key()
    sim = make_simulator("cisco_asa", key)
    try:
        kh = write_known_hosts(tmp / "known_hosts", [(sim.port, key)])
        target = Target("asa1", "device", "127.0.0.1", "firewall", port=sim.port,
                        options={"device_type": "cisco_asa", **SIM_OPTIONS["cisco_asa"]})
        creds = Credentials("admin", Secret("s3cret-pw"), extra={"secret": Secret("en-s3cret")})
        ctx = ConnectorContext(known_hosts=str(kh), connect_timeout=5, command_timeout=10)
        conn = registry.get("firewall")
        protected = ["192.0.2.10/32", "198.51.100.1/32"]
        base = {"allow_private": True, "protected": protected}
        # the scaffold (group, deny rule) exists before the action, as on a device blocked on before: undo then
        # restores the running configuration exactly
        first = {**base, "addresses": ["45.33.7.9"]}
        with conn.open(target, creds, ctx) as s:
            conn.apply(s, "block_ip", first, conn.snapshot(s, "block_ip", first))
        sim.faults.clear()

        @contextlib.contextmanager
        def drop() -> Iterator[None]:  # the device takes the address, then the line that saves drops the link
            fault = sim.inject(r"^write memory$", "drop")
            try:
                yield
            finally:
                sim.faults.remove(fault)
        yield Rig(conn, target, creds, ctx, "block_ip", {**base, "addresses": ["45.35.1.1", "45.34.0.0/24"]},
                  state=lambda: copy.deepcopy(sim.state.running()), sent=lambda: list(sim.lines),
                  drop_after_write=drop,
                  refused=[(target, {**base, "addresses": ["192.0.2.0/24"]}),
                           (target, {**base, "addresses": ["198.51.100.1"]})],
                  secrets=["s3cret-pw", "en-s3cret"], compare=_firewall_sent,
                  unreachable=dataclasses.replace(target, port=_closed_port()))
    finally:
        sim.stop()


# netmiko's own mode changes around the change lines and the dialect's reads (not configuration)
_MODE = re.compile(r"^(configure terminal|end|exit|show .*|)$")


def _firewall_sent(preview: list[str], sent: list[str]) -> None:
    """The preview (from the resolve step's facts) is every line the device received, besides the connector's
    reads and netmiko's own mode changes (tests/integration/firewall/test_preview_exact.py, per dialect)."""
    shown = {ln.strip() for ln in preview}
    received = [ln.strip() for ln in sent if ln.strip() in shown or not _MODE.match(ln.strip())]
    assert received == [ln.strip() for ln in preview], "the preview is not what was sent"


# -- winrm_windows: the WS-Management double (a simulated Windows host: firewall, profiles, tasks) --------------
def winrm_windows(request: pytest.FixtureRequest, registry: Registry, tmp: Path) -> Iterator[Rig]:
    from tests.doubles.wsman import WindowsHost, WSManDouble
    from tests.integration.winrm.conftest import PASSWORD, USER
    pki = request.getfixturevalue("pki")
    request.getfixturevalue("ntlm_users")
    host = WindowsHost(ps_version="5.1")
    with WSManDouble(host, tls=pki.server, users={USER: PASSWORD}) as dbl:
        target = Target("win01", "host", "127.0.0.1", "winrm_windows", os="windows",
                        options={"port": dbl.port, "ca_file": str(pki.ca_file), "keep_dhcp_dns": False})
        ctx = ConnectorContext(management_addresses=("127.0.0.1",), connect_timeout=1.0, command_timeout=2.0)

        @contextlib.contextmanager
        def drop() -> Iterator[None]:
            """The script that changes the firewall ran on the host; its output never comes back."""
            from tests.doubles.wsman.server import InjectedFault
            fired: list[bool] = []
            take = dbl._take_fault

            def after_change(action: str) -> Any:
                if action == "Receive" and not fired and dbl.scripts and "New-NetFirewallRule" in dbl.scripts[-1]:
                    fired.append(True)
                    return InjectedFault("Receive", "drop")
                return take(action)
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(dbl, "_take_fault", after_change)
                yield
        yield Rig(registry.get("winrm_windows"), target, Credentials(USER, Secret(PASSWORD)), ctx, "isolate", {},
                  state=lambda: _windows_state(host), sent=lambda: [ln for s in dbl.scripts for ln in s.splitlines()],
                  drop_after_write=drop, refused=[], secrets=[PASSWORD],
                  protected_elsewhere=_HOSTS_PROTECTED, compare=_script_lines_sent,
                  unreachable=dataclasses.replace(target, options={**target.options, "port": _closed_port()}))


def _windows_state(host: Any) -> Any:
    return (copy.deepcopy(host.profiles), sorted(copy.deepcopy(host.rules), key=lambda r: r.name),
            sorted(host.tasks))


def _script_lines_sent(preview: list[str], sent: list[str]) -> None:
    """Every command line of the preview (comments describe steps) reached the host, in that order."""
    sent_lines = [ln.strip() for ln in sent]
    pos = 0
    for line in (ln.strip() for ln in preview if ln.strip() and not ln.lstrip().startswith("#")):
        assert line in sent_lines[pos:], f"previewed but not sent: {line[:120]}"
        pos = sent_lines.index(line, pos) + 1


# -- ssh_linux: the practice lab's real host (sshd, nftables) in a network namespace --------------------------------
def ssh_linux(request: pytest.FixtureRequest, registry: Registry, tmp: Path) -> Iterator[Rig]:
    from connectors.ssh_linux.session import SshSession
    from tests.integration.ssh_linux.helpers import Agent, nft_ruleset, stop_timers
    lab = request.getfixturevalue("clean_lab")
    stop_timers(lab)
    helper = Agent(lab)
    sent: list[str] = []
    armed: list[bool] = []
    run = SshSession.run

    def recording(self: SshSession, cmd: str, input: str | None = None, timeout: float | None = None,
                  **kw: Any) -> tuple[int, str, str]:
        sent.append(cmd if input is None else f"{cmd} <<'EOF'\n{input}EOF")
        out = run(self, cmd, input, timeout, **kw)
        if armed and input is not None and ("table inet" in input or "*filter" in input):
            armed.clear()
            self.transport.close()  # the ruleset is loaded; the connection dies before anything else is read
        return out

    drop = _arming(armed)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SshSession, "run", recording)
        yield Rig(registry.get("ssh_linux"), helper.target("victim"), helper.creds, helper.ctx, "isolate", {},
                  state=lambda: nft_ruleset(lab, "victim"), sent=lambda: list(sent), drop_after_write=drop,
                  refused=[], secrets=[], around=lambda: lab.enter("mgmt"), compare=_shell_commands_sent,
                  protected_elsewhere=_HOSTS_PROTECTED,
                  unreachable=dataclasses.replace(helper.target("victim"), port=1))
    stop_timers(lab)


def _arming(armed: list[bool]) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """The rigs' drop_after_write for a patched client call: while the context is open, ``armed`` tells it to
    drop the connection right after its next write reaches the target."""
    @contextlib.contextmanager
    def drop() -> Iterator[None]:
        armed.append(True)
        yield
        armed.clear()
    return drop


_TOKEN = re.compile(r"\b[0-9a-f]{32}\b")


def _shell_commands_sent(preview: list[str], sent: list[str]) -> None:
    """Every command sent (with its stdin) is shown in the preview, the action's random token as a placeholder."""
    shown = _TOKEN.sub("TOKEN", "\n".join(preview).replace("<token of this action, journaled in its snapshot>",
                                                             "TOKEN"))
    for command in sent:
        assert _TOKEN.sub("TOKEN", command) in shown, f"sent but not previewed: {command[:300]}"


# -- active_directory: a real Samba AD DC (session-wide), reached from its client namespace ----------------------
def active_directory(request: pytest.FixtureRequest, registry: Registry, tmp: Path) -> Iterator[Rig]:
    import ldap3
    from ldap3.core.exceptions import LDAPSocketReceiveError

    from agent.lab import netns
    from tests.integration.ad.helpers import AGENT_PASSWORD, CTX, target_for
    env = request.getfixturevalue("samba_env")
    dc = env.dc
    name = f"conf{tmp.name[-12:].replace('_', '')}"[:20]
    password = f"Pw-{name}-9a!"
    with netns.enter(env.client_ns):
        dc.create_user(name, password)
    sent: list[str] = []
    armed: list[bool] = []
    modify = ldap3.Connection.modify

    def recording(self: Any, dn: str, changes: Any, *a: Any, **kw: Any) -> Any:
        sent.extend(f"modify {attr}: {op}" for attr, ops in changes.items() for op, _values in ops)
        out = modify(self, dn, changes, *a, **kw)
        if armed:
            armed.clear()
            self.socket.shutdown(2)  # the DC applied the modify; its answer is lost with the connection
            raise LDAPSocketReceiveError("error receiving data: connection reset")
        return out

    drop = _arming(armed)

    def state() -> Any:
        with netns.enter(env.client_ns):
            return dict(dc.read(name, ["userAccountControl"]))
    target = target_for(dc)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ldap3.Connection, "modify", recording)
        yield Rig(registry.get("active_directory"), target, Credentials("ir-agent@lab.test", Secret(AGENT_PASSWORD)),
                  CTX, "disable_account", {"account": name}, state=state, sent=lambda: list(sent),
                  drop_after_write=drop, refused=[(target, {"account": "Administrator"}),
                                                  (target, {"account": "krbtgt"})],
                  secrets=[AGENT_PASSWORD, password], around=lambda: netns.enter(env.client_ns),
                  compare=_ldap_changes_sent, unreachable=target_for(dc, port=1))


def _ldap_changes_sent(preview: list[str], sent: list[str]) -> None:
    """The preview describes LDAP operations: every attribute modified, and how, is named in it."""
    shown = "\n".join(preview)
    words = {"MODIFY_ADD": "add", "MODIFY_DELETE": "delete", "MODIFY_REPLACE": ":="}
    assert sent, "nothing was modified"
    for change in sent:
        attr, op = change.removeprefix("modify ").split(": ")
        assert f"modify its DN: {attr}" in shown or f"{attr} " in shown, f"modified but not previewed: {attr}"
        assert words.get(op, op) in shown, f"{attr}: the preview does not say {words.get(op, op)!r}"


RIGS: dict[str, RigBuilder] = {
    "active_directory": active_directory,
    "firewall": firewall,
    "ssh_linux": ssh_linux,
    "toybox": toybox,
    "winrm_windows": winrm_windows,
}
