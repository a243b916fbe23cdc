"""The lab DC itself: isolated from the machine, nothing can leave, TLS material as Samba requires."""

from __future__ import annotations

import stat
import subprocess

import pytest

from agent.lab import netns
from agent.lab.samba import SERVICES

pytestmark = [pytest.mark.samba, pytest.mark.root]


def _in_dc_mounts(dc, *argv: str) -> str:
    """Run a command in the DC's network and mount namespaces (what Samba itself sees)."""
    return subprocess.run(["nsenter", "-t", str(dc.pid), "-m", "-n", *argv], capture_output=True, text=True,
                          check=True, env={"PATH": netns.SBIN_PATH}).stdout


class TestSambaDCIsolation:
    def test_no_default_route_in_the_dc_namespace(self, samba_dc):
        """Only the lab subnet is routable from the DC: DNS/Kerberos/NTP to the outside cannot leave."""
        routes = netns.run(samba_dc.namespace, ["ip", "route", "show"]).stdout
        assert "default" not in routes and samba_dc.address in routes

    def test_chatty_services_are_not_started(self, samba_dc):
        """dnsupdate, nbt and wrepl are absent from server services; nothing listens on NetBIOS ports."""
        assert not {"dnsupdate", "nbt", "wrepl"} & {s.strip() for s in SERVICES.split(",")}
        assert f"server services = {SERVICES}" in samba_dc.conf.read_text()
        sockets = netns.run(samba_dc.namespace, ["ss", "-lnup"]).stdout
        assert ":137 " not in sockets and ":138 " not in sockets

    def test_private_resolver_hosts_and_run_samba(self, samba_dc):
        """Samba sees its own resolv.conf (127.0.0.1), hosts file and /run/samba (the state dir's run/)."""
        assert _in_dc_mounts(samba_dc, "cat", "/etc/resolv.conf").strip() == "nameserver 127.0.0.1"
        assert samba_dc.server_name in _in_dc_mounts(samba_dc, "cat", "/etc/hosts")
        listing = set(_in_dc_mounts(samba_dc, "ls", "/run/samba").split())
        assert listing == {p.name for p in (samba_dc.state_dir / "run").iterdir()}

    def test_tls_key_mode_and_certificate_names(self, samba_dc):
        """The key is 0600 (Samba refuses others); the certificate names the DNS name and the address."""
        from cryptography import x509

        assert stat.S_IMODE((samba_dc.state_dir / "tls" / "key.pem").stat().st_mode) == 0o600
        cert = x509.load_pem_x509_certificate((samba_dc.state_dir / "tls" / "cert.pem").read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [samba_dc.server_name]
        assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == [samba_dc.address]

    def test_directory_entry_for_the_lab_inventory(self, samba_dc):
        """directory_entry() gives what the inventory's directories: section needs."""
        entry = samba_dc.directory_entry()
        assert entry["address"] == samba_dc.address
        assert entry["options"] == {"base_dn": "DC=lab,DC=test", "server_name": "dc1.lab.test",
                                    "ca_file": str(samba_dc.ca_file), "port": 636}
