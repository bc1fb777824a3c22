"""The cluster's namespaces: layout from the policy, reachability through the
wan namespace only, teardown that leaves nothing (also after a failed build)."""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import threading
from pathlib import Path

import pytest

from sealnet.compiler.frontend import compile_text, load_policy
from sealnet.runtime import netns
from sealnet.runtime.cluster import topology
from sealnet.runtime.cluster.topology import ROLE_CONTROL, ROLE_NODE, TopologyError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _policy(name: str = "genomics.policy"):
    policy, _ = load_policy(str(EXAMPLES / name))
    assert policy is not None
    return policy


def _cluster_id() -> str:
    return "t" + secrets.token_hex(3)


def test_plan_places_hosts_in_their_domains() -> None:
    policy = _policy()
    layout = topology.plan(policy, 3, "abc")
    # genomics: hospital and lab have TEEs (a control plane each), public has none.
    assert [h.name for h in layout.hosts if h.role == ROLE_CONTROL] == ["hospital-cp", "lab-cp"]
    for domain in policy.domains:
        nodes = layout.by_domain(domain.name, ROLE_NODE)
        assert len(nodes) == 3
        for host in layout.by_domain(domain.name):
            assert any(ipaddress.ip_address(host.address) in p for p in domain.prefixes)
    addresses = [h.address for h in layout.hosts]
    assert len(set(addresses)) == len(addresses)
    assert len({h.wan_ifindex for h in layout.hosts}) == len(layout.hosts)
    assert all(len(h.wan_ifname) < netns.IFNAMSIZ for h in layout.hosts)
    assert topology.Layout.from_json(layout.to_json()) == layout


def test_plan_uses_the_policy_control_address() -> None:
    layout = topology.plan(_policy("pipeline.policy"), 1, "abc")
    cp = layout.host("hospital-cp")
    assert (cp.address, cp.port) == ("198.18.10.1", 7443)
    assert layout.host("hospital-n1").address == "198.18.10.2"


def test_plan_refuses_more_nodes_than_the_cidr_holds() -> None:
    policy, diags = compile_text(
        'policy "tiny" version 1\ndomain a { tee sim; nodes 198.18.5.0/30 }\ndefault deny\n', "tiny.policy")
    assert policy is not None, diags
    assert len(topology.plan(policy, 1, "abc").hosts) == 2  # .1 control, .2 node
    with pytest.raises(TopologyError, match="'a'.*fewer than 2 nodes"):
        topology.plan(policy, 2, "abc")
    with pytest.raises(TopologyError, match="at least 1"):
        topology.plan(policy, 0, "abc")


def _echo_once(layout: topology.Layout, src: topology.Host, dst: topology.Host, port: int = 7001) -> bytes:
    ready = threading.Event()

    def serve() -> None:
        with socket.create_server((dst.address, port)) as server:
            server.settimeout(5)
            ready.set()
            conn, _ = server.accept()
            with conn:
                conn.sendall(conn.recv(64)[::-1])

    server = threading.Thread(target=netns.run_in_netns, args=(dst.netns, serve), daemon=True)
    server.start()
    assert ready.wait(5)

    def ask() -> bytes:
        with socket.create_connection((dst.address, port), timeout=5) as conn:
            conn.sendall(b"reads")
            return conn.recv(64)

    try:
        return netns.run_in_netns(src.netns, ask)
    finally:
        server.join(5)


def _wan_rx_packets(layout: topology.Layout, host: topology.Host) -> int:
    with netns.iproute(layout.wan_netns) as ipr:
        link = ipr.link("get", index=host.wan_ifindex)[0]
        return int(link.get("IFLA_STATS64")["rx_packets"])


@pytest.mark.kernel
def test_hosts_reach_each_other_across_domains_through_the_wan() -> None:
    layout = topology.plan(_policy(), 2, _cluster_id())
    try:
        topology.build(layout)
        assert set(topology.cluster_namespaces(layout.cluster_id)) == set(layout.namespaces)
        src, dst = layout.host("hospital-n1"), layout.host("lab-n2")
        before = _wan_rx_packets(layout, src)
        assert _echo_once(layout, src, dst) == b"sdaer"
        # The connection's packets entered the wan namespace from the source's veth.
        assert _wan_rx_packets(layout, src) - before >= 3
        # Same-domain traffic crosses the wan too (there is no other path).
        assert _echo_once(layout, layout.host("lab-n1"), dst, 7002) == b"sdaer"
    finally:
        topology.teardown(layout.cluster_id)
    assert topology.cluster_namespaces(layout.cluster_id) == []
    assert not any(netns.netns_exists(n) for n in layout.namespaces)
    assert topology.teardown(layout.cluster_id) == 0  # idempotent


@pytest.mark.kernel
def test_failed_build_removes_what_it_created() -> None:
    layout = topology.plan(_policy(), 2, _cluster_id())
    # A namespace already holding a later host's name makes the build fail half way.
    blocker = layout.host("lab-n1").netns
    netns.create_netns(blocker)
    try:
        with pytest.raises(netns.NetnsError, match="already exists"):
            topology.build(layout)
        assert topology.cluster_namespaces(layout.cluster_id) == []
    finally:
        netns.delete_netns(blocker)
        topology.teardown(layout.cluster_id)
    assert not os.path.exists(os.path.join(netns.NETNS_RUN_DIR, layout.wan_netns))


def test_simulated_policy_declares_sim_tees_and_changes_nothing_else() -> None:
    from sealnet.compiler.verify import verify
    from sealnet.runtime.cluster import trust

    for name in ("genomics.policy", "pipeline.policy", "federation.policy"):
        text = (EXAMPLES / name).read_text()
        policy = _policy(name)
        layout = topology.plan(policy, 1, "abc")
        derived, diags = compile_text(trust.simulated_policy_text(text, policy, layout), name)
        assert derived is not None, diags
        for before, after in zip(policy.domains, derived.domains):
            assert (after.name, after.prefixes) == (before.name, before.prefixes)
            if before.tee.value == "none":
                assert after.tee == before.tee and after.measurements == before.measurements
                continue
            assert after.tee.value == "sim"
            assert after.measurements == (before.measurements or (trust.SIM_LAUNCH,))
            cp = layout.by_domain(before.name, ROLE_CONTROL)[0]
            assert after.control_plane == (before.control_plane or f"{cp.address}:{cp.port}")
        assert [r.source_text for r in derived.rules] == [r.source_text for r in policy.rules]
        stages = lambda p: [(s.qualified_name, s.domain, s.ports) for w in p.workflows for s in w.stages]  # noqa: E731
        assert stages(derived) == stages(policy)
        assert verify(derived).findings == []
