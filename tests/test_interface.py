"""Interface preparation for sealing: offloads off, route MTU lowered, and undone."""

from __future__ import annotations

import errno
import socket

import pytest

from sealnet.runtime import ethtool, interface
from sealnet.runtime.netns import run, run_in_netns

IP_MTU_DISCOVER = 10  # <linux/in.h>
IP_PMTUDISC_DO = 2

pytestmark = pytest.mark.kernel


def _routes(netns: str) -> str:
    return run(netns, ["ip", "-4", "route", "show", "table", "main"], capture_output=True, text=True).stdout


def _gso_max_segs(iface: str, netns: str) -> int:
    from sealnet.runtime.netns import iproute

    with iproute(netns) as ipr:
        return int(ipr.get_links(ipr.link_lookup(ifname=iface)[0])[0].get_attr("IFLA_GSO_MAX_SEGS"))


def test_prepare_lowers_route_mtu_and_disables_offloads_then_restore_undoes(topology) -> None:
    ns_a, _, veth = topology.pair("198.18.0.0/30")
    before_routes = _routes(ns_a)
    before_segs = _gso_max_segs(veth.a, ns_a)
    before = {n: f.active for n, f in ethtool.features(veth.a, netns=ns_a).items()}
    assert before["tx-generic-segmentation"] and before["rx-gro"] is not None

    change = interface.prepare(veth.a, ns_a)

    assert change.route_mtu == 1500 - interface.SEAL_OVERHEAD
    assert f"mtu {change.route_mtu}" in _routes(ns_a)
    after = ethtool.features(veth.a, netns=ns_a)
    segmentation = [n for n in after if n.startswith("tx-") and n.endswith("segmentation")]
    assert segmentation and not any(after[n].active for n in segmentation)
    assert not after["rx-gro"].active
    assert before_segs > 1 and _gso_max_segs(veth.a, ns_a) == 1  # TCP's own GSO: one segment per skb

    # the record survives a JSON round trip (the node agent keeps it on disk)
    change = interface.InterfaceChange.from_json(change.to_json())
    assert interface.restore(change) == []
    assert _routes(ns_a) == before_routes
    restored = {n: f.active for n, f in ethtool.features(veth.a, netns=ns_a).items()}
    assert restored == before
    assert _gso_max_segs(veth.a, ns_a) == before_segs


def _send_df(destination: str, size: int) -> int:
    """Send one UDP datagram with DF set; 0 or the errno the stack refused it with."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
        try:
            sock.sendto(b"x" * size, (destination, 9))
        except OSError as exc:
            return exc.errno or -1
    return 0


def test_route_mtu_limits_what_the_sender_emits(topology) -> None:
    ns_a, _, veth = topology.pair("198.18.0.4/30")
    udp_ip_headers = 28
    largest = 1500 - interface.SEAL_OVERHEAD - udp_ip_headers
    assert run_in_netns(ns_a, _send_df, veth.ip_b, largest + 1) == 0  # before: fits the link
    interface.prepare(veth.a, ns_a)
    assert run_in_netns(ns_a, _send_df, veth.ip_b, largest + 1) == errno.EMSGSIZE
    assert run_in_netns(ns_a, _send_df, veth.ip_b, largest) == 0


def test_prepare_names_an_unpaced_congestion_control_then_restore_undoes(topology) -> None:
    """One-segment TCP needs a congestion control that does not pace per skb (see runtime/interface.py)."""
    ns_a, ns_b, veth = topology.pair("198.18.0.8/30")
    before_routes = _routes(ns_b)
    assert "congctl" not in before_routes

    change = interface.prepare(veth.b, ns_b)

    assert change.route_cc in interface.UNPACED_CONGESTION_CONTROLS
    assert f"congctl {change.route_cc}" in _routes(ns_b)

    # A TCP connection over the prepared route uses that congestion control.
    def connect_and_read_cc(address: tuple[str, int]) -> str:
        with socket.create_connection(address, timeout=5) as client:
            return client.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0").decode()

    with run_in_netns(ns_a, socket.create_server, (veth.ip_a, 0)) as server:
        assert run_in_netns(ns_b, connect_and_read_cc, server.getsockname()) == change.route_cc

    assert interface.restore(interface.InterfaceChange.from_json(change.to_json())) == []
    assert _routes(ns_b) == before_routes
