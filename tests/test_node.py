"""The node loader on a veth pair: attach, enforce on real traffic, replace, unload."""

from __future__ import annotations


import pytest

from sealnet.compiler.build import build_object
from sealnet.contracts import abi
from sealnet.runtime import node
from sealnet.contracts.libbpf import BpfLoadError, Map, get_pinned
from sealnet.runtime.netns import run_in_netns
from policies import compile_ok
from testbed import received, send_udp

pytestmark = pytest.mark.kernel

POLICY = '''policy "n" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule open: allow plaintext udp from a to b port 7000
rule back: allow plaintext udp from b to a
'''


def _exchange(ns_a: str, ns_b: str, dst: str, port: int, count: int = 20) -> int:
    """Send `count` datagrams from a to b:port; how many arrived (bounded in time)."""
    payloads = [b"probe %d" % i for i in range(count)]
    return len(received(ns_b, "0.0.0.0", port, lambda: run_in_netns(ns_a, send_udp, dst, port, payloads), count,
                        timeout=0.3))


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(node, "STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(node, "DURABLE_DIR", str(tmp_path / "lib"))
    return tmp_path


def test_load_enforces_replaces_and_unloads(topology, state_dir) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    obj = build_object(compile_ok(POLICY))
    assert _exchange(ns_a, ns_b, "198.18.0.2", 7001) == 20  # nothing loaded yet

    state = node.load_object(obj, iface=veth.a, netns=ns_a, measurement="sha384:test", policy="n")
    try:
        assert _exchange(ns_a, ns_b, "198.18.0.2", 7000) == 20   # rule `open`
        assert _exchange(ns_a, ns_b, "198.18.0.2", 7001) == 0    # default deny
        hits = Map.from_fd(get_pinned(f"{state.pin_dir}/rule_hits"), owns_fd=True)
        assert hits.sum_percpu_u64((0).to_bytes(4, "little")) >= 20  # egress hits of `open`
        assert len(state.program_tags[abi.EGRESS_PROGRAM]) == 16
        assert node.attached_program_ids(veth.a, ns_a) == state.program_ids

        # A program the kernel refuses changes nothing: the running one stays.
        with pytest.raises(BpfLoadError):
            node.load_object(b"\x7fELF-not-really", iface=veth.a, netns=ns_a, measurement="x", policy="x")
        assert node.attached_program_ids(veth.a, ns_a) == state.program_ids
        assert _exchange(ns_a, ns_b, "198.18.0.2", 7001) == 0

        # A reload replaces both programs in place.
        again = node.load_object(obj, iface=veth.a, netns=ns_a, measurement="sha384:test", policy="n")
        assert again.program_ids != state.program_ids
        assert node.attached_program_ids(veth.a, ns_a) == again.program_ids
    finally:
        assert node.unload(veth.a, ns_a, open_sealed_flows=True) == []  # no rules recorded: assumed sealing
    assert node.attached_program_ids(veth.a, ns_a) == {"sealnet_egress": None, "sealnet_ingress": None}
    assert _exchange(ns_a, ns_b, "198.18.0.2", 7001) == 20
    assert node.read_state(veth.a, ns_a) is None


def test_sealnet_node_cli_refuses_bad_bundles_and_keeps_the_running_program(topology, state_dir, tmp_path, capsys) -> None:
    from sealnet.compiler.cli import main as policyc
    from sealnet.runtime.cli import main as sealnet

    ns_a, ns_b, veth = topology.pair("198.18.0.4/30")
    policy = tmp_path / "n.policy"
    policy.write_text(POLICY.replace("198.18.0.1/32", "198.18.0.5/32").replace("198.18.0.2/32", "198.18.0.6/32"))
    key, bundle = tmp_path / "auth.key", tmp_path / "n.bundle"
    assert policyc(["keygen", str(key)]) == 0
    assert policyc(["compile", str(policy), "-o", str(bundle), "--sign-key", str(key)]) == 0
    assert sealnet(["node", "load", str(bundle), "--iface", veth.a, "--netns", ns_a, "--trust", f"{key}.pub"]) == 0
    try:
        running = node.attached_program_ids(veth.a, ns_a)
        assert None not in running.values()
        tampered = tmp_path / "tampered.bundle"
        data = bytearray(bundle.read_bytes())
        data[len(data) // 2] ^= 0x01
        tampered.write_bytes(bytes(data))
        capsys.readouterr()
        assert sealnet(["node", "load", str(tampered), "--iface", veth.a, "--netns", ns_a,
                        "--trust", f"{key}.pub"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("sealnet: error:") and "refused, nothing loaded: signature" in err
        assert node.attached_program_ids(veth.a, ns_a) == running
        assert _exchange(ns_a, ns_b, "198.18.0.6", 7000) == 20
        assert _exchange(ns_a, ns_b, "198.18.0.6", 7001) == 0
        assert sealnet(["node", "status", "--iface", veth.a, "--netns", ns_a, "--format", "json"]) == 0
    finally:
        assert sealnet(["node", "unload", "--iface", veth.a, "--netns", ns_a]) == 0
