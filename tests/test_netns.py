"""sealnet.runtime.netns and sealnet.runtime.ethtool against the real kernel; state is read back
with iproute2/ethtool (an independent implementation) where it matters.

Cost: about 1-2 s in total.
"""

from __future__ import annotations

import json
import os
import socket

import pytest

from sealnet.runtime import ethtool
from sealnet.runtime import netns as nsmod
from testbed import Topology

pytestmark = pytest.mark.kernel


def _ip_json(ns: str, *args: str) -> list[dict]:
    proc = nsmod.run(ns, ["ip", "-j", *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_pair_is_addressed_up_and_removed(topology: Topology) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.4.0/30", mtu=1400)
    assert ns_a != ns_b and nsmod.netns_exists(ns_a) and nsmod.netns_exists(ns_b)
    links = {l["ifname"]: l for l in _ip_json(ns_a, "addr", "show")}
    assert set(links) == {"lo", veth.a}
    a = links[veth.a]
    assert a["mtu"] == 1400
    assert "UP" in a["flags"] and "UP" in links["lo"]["flags"]
    assert [(x["local"], x["prefixlen"]) for x in a["addr_info"] if x["family"] == "inet"] == [("198.18.4.1", 30)]
    b = {l["ifname"]: l for l in _ip_json(ns_b, "addr", "show")}[veth.b]
    assert [x["local"] for x in b["addr_info"] if x["family"] == "inet"] == ["198.18.4.2"]
    assert veth.ifindex_a() == a["ifindex"]
    assert veth.a not in _host_links() and veth.b not in _host_links()

    nsmod.add_route("198.19.7.0/24", gateway=veth.ip_b, mtu=1300, netns=ns_a)
    routes = {r["dst"]: r for r in _ip_json(ns_a, "route", "show")}
    assert routes["198.19.7.0/24"]["gateway"] == "198.18.4.2"
    assert any(m.get("mtu") == 1300 for m in routes["198.19.7.0/24"].get("metrics", []))
    assert nsmod.get_mtu(veth.b, netns=ns_b) == 1400

    topology.close()
    assert not nsmod.netns_exists(ns_a) and not nsmod.netns_exists(ns_b)


def test_topology_cleans_up_after_exception() -> None:
    created: list[str] = []
    before = _host_links()
    with pytest.raises(RuntimeError, match="boom"):
        with Topology() as topo:
            ns = topo.netns()
            created.append(ns)
            veth = topo.veth(None, ns)  # one end in the host namespace
            created.extend([veth.a, veth.b])
            assert veth.a in _host_links()
            raise RuntimeError("boom")
    assert not nsmod.netns_exists(created[0])
    assert _host_links() == before


def test_names_are_unique_and_short() -> None:
    a, b = Topology(), Topology()
    assert a.id != b.id
    assert nsmod.unique_name() != nsmod.unique_name()
    with pytest.raises(ValueError):
        nsmod.add_veth("x" * 16, "y")
    with pytest.raises(ValueError):
        nsmod.create_netns("../etc")


def test_errors_name_the_object(topology: Topology) -> None:
    ns = topology.netns()
    with pytest.raises(nsmod.NetnsError, match="already exists"):
        nsmod.create_netns(ns)
    with pytest.raises(nsmod.NetnsError, match="does not exist"):
        with nsmod.enter("sn-definitely-missing"):
            pass
    with pytest.raises(nsmod.NetnsError, match="no interface 'nope0'"):
        nsmod.set_up("nope0", netns=ns)
    nsmod.add_address("lo", "198.18.9.9/32", netns=ns)
    with pytest.raises(nsmod.NetnsError, match="File exists"):
        nsmod.add_address("lo", "198.18.9.9/32", netns=ns)
    # pyroute2 would create a missing namespace implicitly; we must not.
    with pytest.raises(nsmod.NetnsError):
        nsmod.ifindex("lo", "sn-definitely-missing")
    assert not nsmod.netns_exists("sn-definitely-missing")


def _ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_enter_switches_this_thread_and_returns(topology: Topology) -> None:
    ns = topology.netns()
    home = _ns_inode()
    with nsmod.enter(ns):
        assert _ns_inode() == os.stat(f"{nsmod.NETNS_RUN_DIR}/{ns}").st_ino
        assert sorted(os.listdir("/sys/class/net")) != []  # sysfs is per mount ns; just readable
        assert socket.if_nameindex() == [(1, "lo")]
    assert _ns_inode() == home
    with pytest.raises(KeyError):
        with nsmod.enter(ns):
            raise KeyError("inside")
    assert _ns_inode() == home


def test_run_in_netns_uses_a_helper_thread(topology: Topology) -> None:
    ns = topology.netns()
    home = _ns_inode()
    assert nsmod.run_in_netns(ns, socket.if_nameindex) == [(1, "lo")]
    assert _ns_inode() == home
    with pytest.raises(ZeroDivisionError):
        nsmod.run_in_netns(ns, lambda: 1 // 0)


def test_popen_runs_inside_namespace(topology: Topology) -> None:
    ns = topology.netns()
    proc = nsmod.popen(ns, ["cat", "/proc/net/dev"], stdout=-1, text=True)
    out, _ = proc.communicate(timeout=10)
    devices = [line.split(":")[0].strip() for line in out.splitlines()[2:]]
    assert devices == ["lo"]


def _ethtool_k(ns: str, ifname: str) -> dict[str, str]:
    proc = nsmod.run(ns, ["ethtool", "-k", ifname], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines()[1:]:
        key, _, value = line.strip().partition(": ")
        out[key] = value.split()[0]
    return out


def test_segmentation_offloads_off(topology: Topology) -> None:
    ns_a, _, veth = topology.pair("198.18.5.0/30")
    ethtool.set_features(veth.a, {"rx-gro": True}, netns=ns_a)
    assert ethtool.features(veth.a, netns=ns_a)["tx-generic-segmentation"].active is True
    assert _ethtool_k(ns_a, veth.a)["generic-receive-offload"] == "on"

    switched = ethtool.disable_segmentation_offloads(veth.a, netns=ns_a)
    assert {"tx-generic-segmentation", "rx-gro", "tx-tcp-segmentation"} <= set(switched)
    shown = _ethtool_k(ns_a, veth.a)
    assert shown["generic-segmentation-offload"] == "off"
    assert shown["generic-receive-offload"] == "off"
    assert shown["tcp-segmentation-offload"] == "off"  # every TSO variant, incl. newer ones
    assert [k for k, v in shown.items() if k.endswith("segmentation") and v == "on"] == []
    after = ethtool.features(veth.a, netns=ns_a)
    assert not any(after[f].active for f in ("tx-generic-segmentation", "tx-tcp-segmentation", "rx-gro"))
    assert ethtool.disable_segmentation_offloads(veth.a, netns=ns_a) == []  # idempotent

    # Our feature table agrees with ethtool's on every name both show.
    ours = ethtool.features(veth.a, netns=ns_a)
    common = set(ours) & set(shown)
    assert len(common) > 30
    assert {n: ours[n].active for n in common} == {n: shown[n] == "on" for n in common}


def test_offload_errors(topology: Topology) -> None:
    ns_a, _, veth = topology.pair("198.18.6.0/30")
    with pytest.raises(ValueError, match="no feature"):
        ethtool.set_features(veth.a, {"warp-drive": False}, netns=ns_a)
    with pytest.raises(ethtool.EthtoolError, match="fixed"):
        ethtool.set_features(veth.a, {"rx-lro": True}, netns=ns_a)  # veth has no LRO
    with pytest.raises(ethtool.EthtoolError, match="nope0.*No such device"):
        ethtool.features("nope0", netns=ns_a)
