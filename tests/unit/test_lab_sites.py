"""`agent lab up --hosts N --sites K` topology (agent/lab/topology.py): the fleet split over K site segments that
only each site's worker host reaches; the generated inventory names each host's site and keeps the workers'
addresses open during isolation. (The real namespaces are exercised by tests/integration/test_site_workers.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.lab import labconfig
from agent.lab.topology import fleet_names, site_of, specs


def test_hundred_hosts_over_three_sites():
    where = site_of(100, 3)
    assert [sum(1 for s in where.values() if s == site) for site in ("site1", "site2", "site3")] == [34, 33, 33]
    assert where["h01"] == "site1" and where["h100"] == "site3"
    lab = specs(100, 3)
    assert lab["h01"].address == "10.77.17.101" and lab["h01"].segment == "site1" and lab["h01"].gateway is None
    assert lab["h100"].address == "10.77.19.133"
    assert dict(lab["wk2"].interfaces) == {"eth0": "10.77.0.82/24", "eth1": "10.77.18.1/24"}
    assert len({spec.address for spec in lab.values()}) == len(lab)  # no address twice
    # a neighbour on each segment to probe contained hosts from (not a management address, nothing listening but
    # the sshd the product's own probe_from logs in to)
    assert dict(lab["obs2"].interfaces) == {"eth0": "10.77.18.2/24"} and lab["obs2"].segment == "site2"
    assert lab["obs2"].sshd and not lab["obs2"].listener and lab["obs2"].gateway is None


def test_limits_are_explained():
    with pytest.raises(ValueError, match="more with --sites"):
        fleet_names(100)
    with pytest.raises(ValueError, match="99 per site"):
        fleet_names(200, 2)
    with pytest.raises(ValueError, match="--sites 10"):
        fleet_names(10, 10)
    assert specs(20)["h20"].address == "10.77.0.120" and specs(20)["h20"].segment == "lan"  # unchanged


def test_inventory_names_sites_and_keeps_workers_reachable(tmp_path: Path):
    inv = labconfig.inventory(tmp_path, None, fleet_names(6, 2), site_of(6, 2))
    assert inv["sites"] == {"site1": {}, "site2": {}}
    assert [inv["hosts"][h]["site"] for h in fleet_names(6)] == ["site1"] * 3 + ["site2"] * 3
    assert inv["management"]["addresses"] == ["10.77.0.10", "10.77.17.1", "10.77.18.1"]
    assert "obs1" not in inv["hosts"]
