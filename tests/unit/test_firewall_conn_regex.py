"""MikroTik connection matching: the regular expressions built from parsed addresses match exactly the addresses
inside them ("ip:port" text, RouterOS "Connection tracking"), and 200 addresses need a handful of round trips."""

from __future__ import annotations

import ipaddress
import random
import re

from connectors.firewall.mikrotik import MikrotikRouterOs, conn_regex


def _nets(rng: random.Random, n: int) -> list[ipaddress.IPv4Network]:
    out = []
    for _ in range(n):
        plen = rng.choice([32, 32, 32, 31, 29, 24, 23, 20, 16, 15])
        out.append(ipaddress.ip_network(f"{rng.randrange(1, 223)}.{rng.randrange(256)}.{rng.randrange(256)}."
                                        f"{rng.randrange(256)}/{plen}", strict=False))
    return out


def test_each_regex_matches_exactly_its_network() -> None:
    rng = random.Random(17)
    for net in _nets(rng, 300):
        rx = re.compile(conn_regex(net))
        inside = [net.network_address + rng.randrange(net.num_addresses) for _ in range(5)]
        outside = [ipaddress.ip_address((int(net.network_address) + d) % 2**32) for d in (-1, net.num_addresses)]
        outside += [ipaddress.ip_address(f"{net.network_address}".rsplit(".", 1)[0] + ".2" + str(
            int(str(net.network_address).rsplit(".", 1)[1]) % 10))]   # a longer last octet sharing the prefix text
        for ip in inside:
            assert rx.search(f"{ip}:443") and rx.search(str(ip)), (net, ip, rx.pattern)
        for ip in outside:
            if ip not in net:
                assert not rx.search(f"{ip}:443"), (net, ip, rx.pattern)


def test_two_hundred_addresses_are_a_few_chunks_that_match_exactly() -> None:
    rng = random.Random(5)
    nets = _nets(rng, 200)
    chunks = MikrotikRouterOs(None, {})._chunks(nets)
    assert len(chunks) <= 30 and sum(len(g) for g, _ in chunks) == 200
    for group, quoted in chunks:
        assert len(quoted) < 400
        rx = re.compile(quoted.replace("\\$", "$"))
        for ip in [n.network_address for n in nets]:
            assert bool(rx.search(f"{ip}:80")) == any(ip in g for g in group), (ip, quoted)
