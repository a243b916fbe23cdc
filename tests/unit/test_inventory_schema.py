"""The inventory schema every connector and the counsel report share: sites, jump hosts, allow-lists, data sets.

docs/architecture.md settles it; config/inventory.yaml annotates it. Each old or other form is refused with a
clear error naming file, line and field, never half-read.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.errors import ConfigError, InputError
from agent.inventory import load_inventory
from agent.reach import pin_names
from connectors.types import AllowRule

REPO = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBastionKeyBastionKeyBastionKeyBastionKey00"

FULL = f"""\
management:
  addresses: [192.0.2.10]
defaults:
  ssh_linux:
    credentials: {{username: ir, private_key: /etc/containment-agent/id_ed25519}}
    allow:
      - {{service: dhcp}}
jump_hosts:
  outer:
    address: 198.51.100.1
    host_key: "{KEY}"
    credentials: {{username: jump, private_key: /etc/containment-agent/jump_key}}
  bos-bastion:
    address: 10.20.0.2
    port: 2222
    host_key: "{KEY}"
    credentials: {{username: jump2, password: env:JUMP2_PASSWORD}}
sites:
  boston:
    jump: [outer, bos-bastion]
    allow:
      - {{to: 10.20.0.53, proto: udp, ports: [53], note: site resolver}}
  hq: {{}}
tags:
  pci:
    allow:
      - {{to: [siem.example.com, 10.9.0.0/24], proto: tcp, ports: 1514, resolve: plan}}
datasets:
  orders:
    data: [payment_card]
    residents: {{MA: 1225, NH: 12}}
hosts:
  web01:
    address: 10.20.0.21
    os: linux
    site: boston
    tags: [pci]
    dataset: orders
    allow:
      - {{to: edr.example.com, proto: tcp, ports: [443], resolve: target}}
  web01-replica:
    address: 10.20.0.22
    os: linux
    site: boston
    jump: []
    dataset: orders
  hq1:
    address: 10.30.0.5
    os: linux
    site: hq
    jump: [outer]
    data: [ssn]
    residents: {{MA: 40}}
devices:
  fw-bos:
    address: 10.20.0.1
    device_type: linux
    site: boston
    credentials: {{username: fw, password: env:FW_PASSWORD}}
directories:
  corp:
    address: 10.30.0.2
    site: hq
"""


def load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent(text))
    return load_inventory(path)


def refused(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return info.value


class TestSchema:
    def test_site_jump_chain_and_hop_credentials(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A host at a site inherits the site's ProxyJump chain (outermost first, keys pinned) and its credentials
        carry one resolved entry per hop."""
        inv = load(tmp_path, FULL)
        web = inv.hosts["web01"]
        assert web.site == "boston"
        assert [(h.name, h.address, h.port, h.username) for h in web.jump] == [
            ("outer", "198.51.100.1", 22, "jump"), ("bos-bastion", "10.20.0.2", 2222, "jump2")]
        assert all(h.host_key == KEY for h in web.jump)
        target = web.target()
        assert target.site == "boston" and target.jump == web.jump
        monkeypatch.setenv("JUMP2_PASSWORD", "pw2")
        assert web.credentials is not None
        creds = web.credentials.resolve()
        assert [c.username for c in creds.hops] == ["jump", "jump2"]
        assert creds.hops[1].password is not None and creds.hops[1].password.reveal() == "pw2"

    def test_own_jump_overrides_the_site(self, tmp_path: Path) -> None:
        """`jump: []` connects directly, `jump: [outer]` uses only that bastion, whatever the site says."""
        inv = load(tmp_path, FULL)
        assert inv.hosts["web01-replica"].jump == ()
        assert inv.hosts["web01-replica"].credentials is not None
        assert inv.hosts["web01-replica"].credentials.hops == ()
        assert [h.name for h in inv.hosts["hq1"].jump] == ["outer"]
        assert [h.name for h in inv.devices["fw-bos"].jump] == ["outer", "bos-bastion"]
        assert inv.directories["corp"].site == "hq" and inv.directories["corp"].jump == ()

    def test_allow_lists_add_up_with_their_source(self, tmp_path: Path) -> None:
        """Connector defaults, site, tags and the host's own entries all apply, each saying where it came from."""
        rules = load(tmp_path, FULL).hosts["web01"].allow
        assert [r.source for r in rules] == ["defaults ssh_linux", "site boston", "tag pci", "host"]
        dhcp, resolver, siem, edr = rules
        assert dhcp.service == "dhcp" and dhcp.protocol == "udp" and 67 in dhcp.ports
        assert resolver.to == ("10.20.0.53",) and resolver.ports == (53,) and resolver.note == "site resolver"
        assert siem.to == ("10.9.0.0/24",) and siem.names == ("siem.example.com",) and siem.ports == (1514,)
        assert edr.names == ("edr.example.com",) and edr.resolve == "target" and edr.to == ()
        assert load(tmp_path, FULL).hosts["web01"].target().allow == rules

    def test_devices_and_directories_have_no_allow_list(self, tmp_path: Path) -> None:
        inv = load(tmp_path, FULL)
        assert inv.devices["fw-bos"].allow == () and inv.directories["corp"].allow == ()

    def test_data_sets_count_people_once(self, tmp_path: Path) -> None:
        """Two systems holding one declared data set carry the same counts; a system of its own gives them inline."""
        inv = load(tmp_path, FULL)
        for name in ("web01", "web01-replica"):
            entry = inv.hosts[name]
            assert entry.dataset == "orders" and entry.data == ("payment_card",)
            assert dict(entry.resident_counts) == {"MA": 1225, "NH": 12}
        hq1 = inv.hosts["hq1"]
        assert hq1.dataset == "hq1" and dict(hq1.resident_counts) == {"MA": 40}
        assert inv.devices["fw-bos"].dataset is None

    def test_pin_names_resolves_plan_rules_only(self, tmp_path: Path) -> None:
        """The resolve step pins `resolve: plan` names to addresses; `resolve: target` ones stay for the connector."""
        rules = load(tmp_path, FULL).hosts["web01"].allow
        pinned = pin_names(rules, resolver=lambda name: {"siem.example.com": ["10.1.1.7"]}[name])
        assert pinned[2].to == ("10.9.0.0/24", "10.1.1.7") and pinned[3].to == ()
        with pytest.raises(InputError, match=r"siem\.example\.com .*tag pci"):
            pin_names(rules, resolver=lambda name: [])

    def test_shipped_example_uses_every_section(self) -> None:
        """config/inventory.yaml (the annotated example) loads and shows sites, jump hosts, tags, data sets."""
        inv = load_inventory(REPO / "agent" / "data" / "config" / "inventory.yaml")
        assert inv.sites and inv.jump_hosts
        assert any(h.jump for h in inv.hosts.values()) and any(h.allow for h in inv.hosts.values())
        shared = [h for h in inv.hosts.values() if h.dataset and sum(
            1 for o in inv.hosts.values() if o.dataset == h.dataset) > 1]
        assert shared, "the example shows one data set held by two systems"


BASE = "hosts:\n  web:\n    address: 10.0.0.3\n    os: linux\n    credentials: {username: root}\n"


@pytest.mark.parametrize(("extra", "field", "message"), [
    ("    site: bostn\nsites:\n  boston: {}\n", "hosts.web.site", ("site 'bostn' is not declared under sites: "
     "(known: boston)")),
    ("    jump: [nope]\n", "hosts.web.jump[0]", "jump host 'nope' is not declared under jump_hosts:"),
    ("    bastion: b1\n", "hosts.web.bastion", "write jump: [NAME]"),
    ("    ProxyJump: b1\n", "hosts.web.ProxyJump", "write jump: [NAME, ...]"),
    ("    allowlist: [10.0.0.53]\n", "hosts.web.allowlist", "write allow:"),
    ("    allow: [10.0.0.53]\n", "hosts.web.allow[0]", "an allow entry is a mapping"),
    ("    allow: [{to: 0.0.0.0/0}]\n", "hosts.web.allow[0].to", "allows every address"),
    ("    allow: [{to: '::/0'}]\n", "hosts.web.allow[0].to", "allows every address"),
    ("    allow: [{to: 10.0.0.53, service: dns}]\n", "hosts.web.allow[0]", "exactly one of 'to'"),
    ("    allow: [{to: 10.0.0.53, ports: [53]}]\n", "hosts.web.allow[0].ports", "ports need proto"),
    ("    allow: [{to: 10.0.0.53, proto: icmp}]\n", "hosts.web.allow[0].proto", "not one of tcp, udp, any"),
    ("    allow: [{to: 10.0.0.53, proto: udp, ports: [70000]}]\n", "hosts.web.allow[0].ports[0]", "above"),
    ("    allow: [{to: 'a;b'}]\n", "hosts.web.allow[0].to", "neither an IP address nor a valid DNS name"),
    ("    allow: [{service: ntp}]\n", "hosts.web.allow[0].service", "unknown service 'ntp'"),
    ("    allow: [{service: dns, ports: [5353]}]\n", "hosts.web.allow[0].ports", "implied by service dns"),
    ("    allow: [{to: x.example, resolve: later}]\n", "hosts.web.allow[0].resolve", "not one of plan"),
    ("    residents: [MA, NH]\n", "hosts.web.residents", "write {MA: null, NH: null}"),
    ("    residents: 1225\n", "hosts.web.residents", "expected {STATE: count"),
    ("    residents: {Massachusetts: 3}\n", "hosts.web.residents.Massachusetts", "two-letter state code"),
    ("    people: 3\n", "hosts.web.people", "write residents:"),
    ("    tags: [web, 'residents:MA=12']\n", "hosts.web.tags[1]", "write residents as its own field"),
    ("    dataset: orders\n", "hosts.web.dataset", "data set 'orders' is not declared under datasets:"),
    ("    dataset: orders\n    residents: {MA: 1}\ndatasets:\n  orders: {residents: {MA: 5}}\n",
     "hosts.web.residents", "written there once"),
    (("  web2:\n    address: 10.0.0.4\n    os: linux\n    dataset: web\n    residents: {MA: 9}\n"
     "    credentials: {username: root}\n"), "hosts.web2", "also described at hosts.web"),
])
def test_other_forms_are_refused_with_file_line_field(tmp_path: Path, extra: str, field: str, message: str) -> None:
    """Typos, other tools' field names and the old residents forms fail at load time, naming what to write."""
    text = BASE + extra
    if "web2" in extra:
        text = BASE + "    residents: {MA: 3}\n" + extra
    err = refused(tmp_path, text)
    assert err.field == field and message in err.reason, (err.field, err.reason)
    assert err.line is not None and str(err).startswith(f"{tmp_path / 'inventory.yaml'}:{err.line}: ")


@pytest.mark.parametrize(("text", "field", "message"), [
    ("jump_hosts:\n  b1:\n    address: 10.0.0.2\n    credentials: {username: j}\n", "jump_hosts.b1",
     "missing required field 'host_key'"),
    ("jump_hosts:\n  b1:\n    address: 10.0.0.2\n    host_key: abc\n    credentials: {username: j}\n",
     "jump_hosts.b1.host_key", "not a valid host key"),
    (f"jump_hosts:\n  b1:\n    address: 10.0.0.2\n    host_key: \"{KEY}\"\n", "jump_hosts.b1",
     "missing required field 'credentials'"),
    ((f"jump_hosts:\n  b1:\n    address: 10.0.0.2\n    host_key: \"{KEY}\"\n    credentials: {{username: j, "
     "password: hunter2}\n"), "jump_hosts.b1.credentials.password", "inline secrets are not allowed"),
    ((f"jump_hosts:\n  b1:\n    address: 10.0.0.2\n    host_key: \"{KEY}\"\n    credentials: {{username: j}}\n"
     "sites:\n  s:\n    jump: [b1, b1]\n"), "sites.s.jump[1]", "appears twice"),
    ((f"jump_hosts:\n  b1:\n    address: 10.0.0.2\n    host_key: \"{KEY}\"\n    credentials: {{username: j}}\n"
     "hosts:\n  web:\n    address: 10.0.0.3\n    os: linux\n    jump: [b1]\n"), "hosts.web",
     "needs its own credentials"),
    ("bastions: {}\n", "bastions", "write jump_hosts:"),
    ("tags:\n  pci:\n    keep: []\n", "tags.pci.keep", "unknown field"),
    ("datasets:\n  orders:\n    residents: [MA]\n", "datasets.orders.residents", "old form"),
])
def test_section_errors(tmp_path: Path, text: str, field: str, message: str) -> None:
    """Errors inside the new sections name file, line and field too."""
    err = refused(tmp_path, text)
    assert err.field == field and message in err.reason, (err.field, err.reason)


def test_allow_rule_is_a_connector_type() -> None:
    """Connectors read allow-lists as typed records from connectors.types (no inventory import needed)."""
    rule = AllowRule(source="host", to=("10.0.0.53",), protocol="udp", ports=(53,))
    assert rule.direction == "out" and rule.resolve == "plan"
