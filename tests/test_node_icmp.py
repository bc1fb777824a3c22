"""Finding 3: an ICMP error about a sealed flow never leaves in clear.

The receiver opens a sealed datagram for a port nobody listens on; its
kernel answers "port unreachable" quoting the opened (plaintext) datagram.
Where the policy passes that ICMP in clear, egress must drop it
(`icmp_quote_drop`); where the policy seals it, it leaves sealed.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from sealnet.compiler.build import build_object
from sealnet.contracts import abi
from sealnet.contracts.libbpf import BpfObject
from sealnet.runtime import node, node_counters, seal_keys
from sealnet.runtime.netns import run_in_netns
from packets import ETH, icmp_echo, icmp_error, udp
from testbed import tap
from policies import compile_ok
from sealing import key_file_text, pair_key

pytestmark = pytest.mark.kernel

POLICY = '''policy "icmp" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule errors_back: allow plaintext icmp from b to a
rule web: allow plaintext udp from a to b port 80
rule secret: seal udp from a to b
rule ba: seal from b to a
'''
A, B = "198.18.0.1", "198.18.0.2"
MARKER = b"SECRET-PLAINTEXT"


@pytest.fixture(scope="module")
def egress():
    obj = BpfObject.open_memory(build_object(compile_ok(POLICY)), "icmp")
    obj.load()
    yield obj
    obj.close()


def _verdict(obj: BpfObject, frame: bytes) -> tuple[int, str]:
    m = obj.map(abi.VERDICT_HITS_MAP)
    before = {v: m.sum_percpu_u64(abi.verdict_slot(abi.Direction.EGRESS, v).to_bytes(4, "little")) for v in abi.Verdict}
    retval = obj.program(abi.EGRESS_PROGRAM).test_run(ETH + frame, data_size_out=4096).retval
    after = {v: m.sum_percpu_u64(abi.verdict_slot(abi.Direction.EGRESS, v).to_bytes(4, "little")) for v in abi.Verdict}
    moved = [v.label for v in abi.Verdict if after[v] != before[v]]
    assert len(moved) == 1
    return retval, moved[0]


def test_an_icmp_error_quoting_a_sealed_flow_is_dropped_in_the_kernel(egress) -> None:
    sealed_flow = udp(A, B, MARKER, dport=5000)
    plain_flow = udp(A, B, MARKER, dport=80)
    assert _verdict(egress, icmp_error(B, A, sealed_flow)) == (abi.TC_ACT_SHOT, "icmp_quote_drop")
    for icmp_type in (4, 5, 11, 12):
        assert _verdict(egress, icmp_error(B, A, sealed_flow, icmp_type))[1] == "icmp_quote_drop"
    assert _verdict(egress, icmp_error(B, A, sealed_flow[:20]))[1] == "icmp_quote_drop"  # ports cut off
    assert _verdict(egress, icmp_error(B, A, b"\x00" * 8))[1] == "icmp_quote_drop"  # unreadable quote
    # Errors about plaintext flows, and ICMP that is not an error, pass as the policy says.
    assert _verdict(egress, icmp_error(B, A, plain_flow)) == (abi.TC_ACT_OK, "allow_pass")
    assert _verdict(egress, icmp_echo(B, A, MARKER)) == (abi.TC_ACT_OK, "allow_pass")


def _frames(ns: str, iface: str, seconds: float, out: list[bytes], ready: threading.Event) -> None:
    s = tap(iface, 0.2)
    ready.set()
    deadline = time.monotonic() + seconds
    with s:
        while time.monotonic() < deadline:
            try:
                frame, addr = s.recvfrom(65535)
            except socket.timeout:
                continue
            if addr[2] != socket.PACKET_OUTGOING:
                out.append(frame)


def test_port_unreachable_for_a_sealed_datagram_never_leaves_in_clear(topology, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(node, "STATE_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(node, "DURABLE_DIR", str(tmp_path / "lib"))
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    obj = build_object(compile_ok(POLICY))
    key = pair_key()
    loaded = []
    try:
        for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)):
            keys = seal_keys.parse_key_file(key_file_text(None, {("a", "b"): {"current": (1, key)}}))
            node.load_object(obj, iface=iface, netns=ns, measurement="sha384:icmp", policy="icmp",
                             domain_ids={"a": 1, "b": 2}, keys=keys)
            loaded.append((iface, ns))
        frames: list[bytes] = []
        ready = threading.Event()
        reader = threading.Thread(target=run_in_netns, args=(ns_a, _frames, ns_a, veth.a, 3.0, frames, ready))
        reader.start()
        ready.wait(5)

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for _ in range(5):
                    s.sendto(MARKER, (B, 7777))  # sealed by `secret`; nobody listens on b
                    time.sleep(0.05)

        run_in_netns(ns_a, send)
        reader.join(10)
        state = node.read_state(veth.b, ns_b)
        assert state is not None
        counts = node_counters.verdict_counts(state)
    finally:
        for iface, ns in loaded:
            node.unload(iface, ns, open_sealed_flows=True)
    assert counts["ingress"]["seal_sent"] >= 5  # b opened them
    assert counts["egress"]["icmp_quote_drop"] >= 1  # and its kernel's answers did not leave
    icmp_from_b = [f for f in frames if f[12:14] == b"\x08\x00" and f[23] == 1]
    assert icmp_from_b == [] and not any(MARKER in f for f in frames)
