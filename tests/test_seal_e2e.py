"""Sealed traffic end to end: two namespaces, a veth pair, real sockets, a capture on the wire.

Both nodes load the same policy's data plane with the node agent's loader
and static keys. Traffic between them is sealed on egress and opened on
ingress. A packet socket on the receiving veth sees the frames as they
travel, before the ingress program runs, and never finds the payload's
plaintext. Every loop is bounded in count and time; the topology fixture
deletes the namespaces, and every test unloads what it loaded.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pytest

from sealnet.compiler.build import build_object
from policies import compile_ok
from sealnet.runtime import node, seal_keys, seal_wire
from sealnet.contracts import abi
from sealnet.contracts.libbpf import Map, get_pinned
from sealnet.contracts.manifest import CIPHER_SUITES, DEFAULT_CIPHER_SUITE
from sealnet.runtime.netns import popen, run, run_in_netns
from sealing import fresh_sender, key_file_text, pair_key
from testbed import Capture, OnPath, echo, inject, udp_packets_to, udp_socket

pytestmark = pytest.mark.kernel

POLICY = '''policy "e2e" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule plain: allow plaintext udp from a to b port 9999
rule blocked: deny udp from a to b port 9998
rule ab: seal from a to b
rule ba: seal from b to a
'''
IP_A, IP_B = "198.18.0.1", "198.18.0.2"
DOMAIN_IDS = {"a": 1, "b": 2}
MARKER = b"PLAINTEXT-MARKER"  # a payload pattern the capture must never see
_objects: dict[str, bytes] = {}


def e2e_object(cipher: str = DEFAULT_CIPHER_SUITE) -> bytes:
    if cipher not in _objects:
        _objects[cipher] = build_object(compile_ok(POLICY + f"cipher {cipher}\n"))
    return _objects[cipher]


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(node, "STATE_DIR", str(tmp_path / "state"))
    return tmp_path


@dataclass
class Nodes:
    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    pair_key: bytes
    path: OnPath | None = None  # with on_path=True: the attacker's namespace between a and b

    def verdicts(self, side: str, direction: str) -> dict[str, int]:
        iface, ns = (self.if_a, self.ns_a) if side == "a" else (self.if_b, self.ns_b)
        state = node.read_state(iface, ns)
        assert state is not None
        m = Map.from_fd(get_pinned(f"{state.pin_dir}/{abi.VERDICT_HITS_MAP}"), owns_fd=True)
        try:
            d = abi.Direction[direction.upper()]
            return {v.label: m.sum_percpu_u64(abi.verdict_slot(d, v).to_bytes(4, "little")) for v in abi.Verdict}
        finally:
            m.close()


def _load(iface: str, ns: str, key: bytes | None, tmp: str, cipher: str) -> None:
    keys = None
    if key is not None:
        path = os.path.join(tmp, f"{iface}.keys")
        with open(path, "w") as fh:
            fh.write(key_file_text(fresh_sender(), {("a", "b"): {"current": (3, key)}}))
        os.chmod(path, 0o600)
        keys = seal_keys.load_key_file(path)
    node.load_object(e2e_object(cipher), iface=iface, netns=ns, measurement="sha384:test", policy="e2e",
                     domain_ids=DOMAIN_IDS, keys=keys)


@contextmanager
def nodes(topology, tmp: str, *, keys_a: bool = True, keys_b: bool = True, load_a: bool = True,
          cipher: str = DEFAULT_CIPHER_SUITE, on_path: bool = False) -> Iterator[Nodes]:
    """Nodes a and b on one veth, or (on_path) through an attacker's namespace between them."""
    path = topology.on_path("198.18.0.0/30") if on_path else None
    if path is None:
        ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
        if_a, if_b = veth.a, veth.b
    else:
        ns_a, ns_b, if_a, if_b = path.ns_a, path.ns_b, path.if_a, path.if_b
    key = pair_key()
    loaded: list[tuple[str, str]] = []
    try:
        if load_a:
            _load(if_a, ns_a, key if keys_a else None, tmp, cipher)
            loaded.append((if_a, ns_a))
        _load(if_b, ns_b, key if keys_b else None, tmp, cipher)
        loaded.append((if_b, ns_b))
        yield Nodes(ns_a, ns_b, if_a, if_b, key, path)
    finally:
        for iface, ns in loaded:
            node.unload(iface, ns, open_sealed_flows=True)


def _payload(n: int) -> bytes:
    return (MARKER * (n // len(MARKER) + 1))[:n]


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("cipher", CIPHER_SUITES)
def test_udp_both_ways_arrives_intact_and_the_wire_shows_no_plaintext(topology, state_dir, cipher: str) -> None:
    with nodes(topology, str(state_dir), cipher=cipher) as n:
        sizes = list(range(0, 40)) + [100, 500, 1000, 1400, 1440]
        server = run_in_netns(n.ns_b, udp_socket, IP_B, 7000)
        client = run_in_netns(n.ns_a, udp_socket, IP_A, 0)
        capture = Capture(n.ns_b, n.if_b)
        stop = threading.Event()
        echoer = threading.Thread(target=echo, args=(server, stop), kwargs={"max_packets": len(sizes)}, daemon=True)
        echoer.start()
        try:
            for size in sizes:
                client.sendto(_payload(size), (IP_B, 7000))
                data, _ = client.recvfrom(65535)
                assert data == _payload(size), f"size {size}"
        finally:
            stop.set()
            echoer.join(timeout=5)
            frames = capture.stop()
            server.close()
            client.close()
        sealed = udp_packets_to(frames, 7000)
        assert len(sealed) >= len(sizes)
        assert not any(MARKER[:8] in f for f in frames), "payload plaintext on the wire"
        suite = seal_wire.SUITE_BY_NAME[cipher]
        key = seal_wire.direction_key(n.pair_key, "a", "b", 3, suite)
        opened = [seal_wire.open_sealed(p, key, frozenset({suite.id}))[1] for p in sealed]  # the documented decoder
        assert sorted(len(p) - 28 for p in opened) == sorted(sizes)
        assert n.verdicts("a", "egress")["seal_sent"] >= len(sizes)
        assert n.verdicts("b", "ingress")["seal_sent"] >= len(sizes)
        assert n.verdicts("a", "ingress")["seal_sent"] >= len(sizes)  # the echoes, opened on a


def _tcp_sink(listener: socket.socket, out: dict[str, object]) -> None:
    conn, _ = listener.accept()
    conn.settimeout(10)
    digest, total = hashlib.sha256(), 0
    with conn:
        while True:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            digest.update(chunk)
            total += len(chunk)
    out["sha256"], out["bytes"] = digest.hexdigest(), total


def _listener(ip: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((ip, port))
    s.listen(1)
    s.settimeout(10)
    return s


@pytest.mark.parametrize("cipher", CIPHER_SUITES)
def test_a_tcp_stream_of_several_megabytes_arrives_intact_and_sealed(topology, state_dir, cipher: str) -> None:
    data = os.urandom(3 << 20) + _payload(1 << 20)  # 4 MiB, the last one a recognisable pattern
    with nodes(topology, str(state_dir), cipher=cipher) as n:
        listener = run_in_netns(n.ns_b, _listener, IP_B, 7100)
        result: dict[str, object] = {}
        sink = threading.Thread(target=_tcp_sink, args=(listener, result), daemon=True)
        sink.start()
        capture = Capture(n.ns_b, n.if_b, seconds=60)
        try:
            client = run_in_netns(n.ns_a, socket.create_connection, (IP_B, 7100), 10)
            with client:
                client.settimeout(30)
                client.sendall(data)
            sink.join(timeout=60)
        finally:
            frames = capture.stop()
            listener.close()
        assert result.get("bytes") == len(data)
        assert result.get("sha256") == hashlib.sha256(data).hexdigest()
        assert not any(MARKER[:8] in f for f in frames), "payload plaintext on the wire"
        assert n.verdicts("b", "ingress")["seal_sent"] > len(data) // 1500
        assert sum(v for k, v in n.verdicts("b", "ingress").items() if k.endswith("_drop")) == 0


@pytest.mark.parametrize("cipher", CIPHER_SUITES)
def test_iperf3_runs_sealed(topology, state_dir, cipher: str) -> None:
    with nodes(topology, str(state_dir), cipher=cipher) as n:
        server = popen(n.ns_b, ["iperf3", "-s", "-1", "-B", IP_B, "-p", "5201"],
                       stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
        try:
            result: dict[str, object] = {}
            for _ in range(50):  # wait (bounded) for the server to listen
                client = run(n.ns_a, ["iperf3", "-c", IP_B, "-p", "5201", "-t", "1", "-J"],
                             capture_output=True, timeout=30)
                result = json.loads(client.stdout or b"{}")
                if client.returncode == 0 and "sum_received" in result.get("end", {}):  # type: ignore[operator]
                    break
                time.sleep(0.1)  # iperf3 may report "unable to connect" as JSON with status 0
            else:
                pytest.fail(f"iperf3 never completed: {result.get('error')}")
        finally:
            server.kill()
            server.wait(timeout=5)
        received = int(result["end"]["sum_received"]["bytes"])  # type: ignore[index]
        assert received > 100 * 1400
        assert n.verdicts("b", "ingress")["seal_sent"] > received // 1500
        assert n.verdicts("b", "ingress")["seal_bad_tag_drop"] == 0


def test_allow_and_deny_rules_behave_as_written(topology, state_dir) -> None:
    with nodes(topology, str(state_dir)) as n:
        plain = run_in_netns(n.ns_b, udp_socket, IP_B, 9999)
        blocked = run_in_netns(n.ns_b, udp_socket, IP_B, 9998)
        blocked.settimeout(0.5)
        client = run_in_netns(n.ns_a, udp_socket, IP_A, 0)
        capture = Capture(n.ns_b, n.if_b)
        try:
            client.sendto(_payload(64), (IP_B, 9999))
            assert plain.recvfrom(2048)[0] == _payload(64)
            client.sendto(_payload(64), (IP_B, 9998))
            with pytest.raises(socket.timeout):
                blocked.recvfrom(2048)
        finally:
            frames = capture.stop()
            for s in (plain, blocked, client):
                s.close()
        assert any(MARKER[:8] in f for f in udp_packets_to(frames, 9999)), "allow plaintext is sent in clear"
        assert not udp_packets_to(frames, 9998), "the deny rule let a frame out"
        assert n.verdicts("a", "egress")["deny_drop"] >= 1


def _send_and_receive_nothing(n: Nodes, count: int) -> list[bytes]:
    """Send `count` datagrams from a to b:7000, check none is delivered; the frames on b's wire."""
    server = run_in_netns(n.ns_b, udp_socket, IP_B, 7000)
    server.settimeout(0.5)
    client = run_in_netns(n.ns_a, udp_socket, IP_A, 0)
    capture = Capture(n.ns_b, n.if_b)
    try:
        for _ in range(count):
            client.sendto(_payload(200), (IP_B, 7000))
        with pytest.raises(socket.timeout):
            server.recvfrom(2048)
    finally:
        frames = capture.stop()
        server.close()
        client.close()
    return frames


def test_without_keys_nothing_leaves_in_plaintext(topology, state_dir) -> None:
    with nodes(topology, str(state_dir), keys_a=False) as n:
        frames = _send_and_receive_nothing(n, count=5)
        assert not udp_packets_to(frames, 7000)
        assert n.verdicts("a", "egress")["seal_no_key_drop"] >= 5


def test_plaintext_where_seal_is_required_and_replays_are_dropped(topology, state_dir) -> None:
    # Node a runs no data plane at all: it sends plaintext that b's policy says must be sealed.
    with nodes(topology, str(state_dir), load_a=False) as n:
        frames = _send_and_receive_nothing(n, count=3)
        assert len(udp_packets_to(frames, 7000)) == 3  # they did cross the wire, in plaintext
        assert n.verdicts("b", "ingress")["seal_plaintext_drop"] >= 3

    # Replay: sealed frames an on-path attacker records and sends again are dropped at b's ingress.
    with nodes(topology, str(state_dir), on_path=True) as n:
        assert n.path is not None
        server = run_in_netns(n.ns_b, udp_socket, IP_B, 7000)
        client = run_in_netns(n.ns_a, udp_socket, IP_A, 0)
        capture = Capture(n.path.ns_w, n.path.w_to_a)
        try:
            for i in range(5):
                client.sendto(b"%d" % i + _payload(50), (IP_B, 7000))
                assert server.recvfrom(2048)[0] == b"%d" % i + _payload(50)
            frames = [f for f in capture.stop() if f[14:] in udp_packets_to([f], 7000)]
            assert len(frames) == 5
            before = n.verdicts("b", "ingress")
            run_in_netns(n.path.ns_w, inject, n.path.w_to_b, frames)
            server.settimeout(0.5)
            with pytest.raises(socket.timeout):
                server.recvfrom(2048)
        finally:
            server.close()
            client.close()
        after = n.verdicts("b", "ingress")
        assert after["seal_replay_drop"] - before["seal_replay_drop"] == 5
        assert after["seal_sent"] == before["seal_sent"]




def test_a_packet_socket_without_qdisc_bypass_goes_through_tc_egress_and_is_sealed(topology, state_dir) -> None:
    """What the bypass guard leaves a packet socket on a sealing node: frames through the qdisc, so
    through TC egress. A plaintext frame of a sealed flow is sealed (counted) or dropped, never sent as is."""
    from packets import udp

    with nodes(topology, str(state_dir), on_path=True) as n:
        assert n.path is not None
        frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + udp(IP_A, IP_B, MARKER * 4, dport=7000)
        server = run_in_netns(n.ns_b, udp_socket, IP_B, 7000)
        capture = Capture(n.path.ns_w, n.path.w_to_a)
        before = n.verdicts("a", "egress")
        try:
            run_in_netns(n.ns_a, inject, n.if_a, [frame] * 3, qdisc_bypass=False)
            assert server.recvfrom(2048)[0] == MARKER * 4  # sealed by a's egress, opened by b's ingress
        finally:
            frames = capture.stop()
            server.close()
        after = n.verdicts("a", "egress")
        assert after["seal_sent"] - before["seal_sent"] == 3
        assert udp_packets_to(frames, 7000) and not any(MARKER[:8] in f for f in frames), "plaintext on the wire"
    # Without keys, the same frames are dropped by a's egress and counted there.
    with nodes(topology, str(state_dir), keys_a=False, on_path=True) as n:
        assert n.path is not None
        capture = Capture(n.path.ns_w, n.path.w_to_a)
        before = n.verdicts("a", "egress")
        try:
            for _ in range(3):
                with pytest.raises(OSError) as dropped:
                    run_in_netns(n.ns_a, inject, n.if_a, [frame], qdisc_bypass=False)
                assert dropped.value.errno == errno.ENOBUFS  # TC egress said TC_ACT_SHOT: NET_XMIT_DROP
        finally:
            frames = capture.stop()
        assert n.verdicts("a", "egress")["seal_no_key_drop"] - before["seal_no_key_drop"] == 3
        assert not udp_packets_to(frames, 7000)


def test_sealnet_cli_loads_with_keys_rotates_and_refuses_bad_key_files(topology, state_dir, tmp_path, capsys) -> None:
    from sealnet.compiler.cli import main as policyc
    from sealnet.runtime.cli import main as sealnet

    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    policy, auth, bundle = tmp_path / "e2e.policy", tmp_path / "auth.key", tmp_path / "e2e.bundle"
    policy.write_text(POLICY)
    assert policyc(["keygen", str(auth)]) == 0
    assert policyc(["compile", str(policy), "-o", str(bundle), "--sign-key", str(auth)]) == 0
    key = pair_key()
    bad, good, rotated = tmp_path / "bad.keys", tmp_path / "good.keys", tmp_path / "rotated.keys"
    bad.write_text(key_file_text(9, {("a", "nowhere"): {"current": (1, key)}}))
    good.write_text(key_file_text(fresh_sender(), {("a", "b"): {"current": (1, key), "next": (2, pair_key())}}))
    rotated.write_text(key_file_text(fresh_sender(), {("a", "b"): {"current": (2, pair_key())}}))
    for path in (bad, good, rotated):
        path.chmod(0o600)
    load = ["node", "load", str(bundle), "--iface", veth.a, "--netns", ns_a, "--trust", f"{auth}.pub"]

    capsys.readouterr()
    assert sealnet([*load, "--keys", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.keys: pairs[0].domains: domain 'nowhere' is not in the bundle" in err
    assert node.attached_program_ids(veth.a, ns_a) == {abi.EGRESS_PROGRAM: None, abi.INGRESS_PROGRAM: None}

    assert sealnet([*load, "--keys", str(good)]) == 0
    try:
        capsys.readouterr()
        assert sealnet(["node", "status", "--iface", veth.a, "--netns", ns_a, "--format", "json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["sealing"] is True and status["sender"] == 0xC6120001  # 198.18.0.1: the node's address
        assert "seal_replay_drop" in status["counters"]["verdict_hits"]["ingress"]
        assert status["counters"]["replay_evictions"] == 0  # the stream table's counter, from its pin
        assert sealnet(["node", "keys", "--iface", veth.a, "--netns", ns_a, "--keys", str(rotated)]) == 0
        assert sealnet(["node", "keys", "--iface", veth.a, "--netns", ns_a, "--keys", str(bad)]) == 1
        assert "keys not changed" in capsys.readouterr().err
        state = node.read_state(veth.a, ns_a)
        assert state is not None and state.sender == 0xC6120001 and state.epochs == {"a->b": 2, "b->a": 2}
        # The same key file under a new load seals in a fresh sequence generation (docs/wire-format.md).
        running = node.attached_program_ids(veth.a, ns_a)
        assert sealnet([*load, "--keys", str(rotated)]) == 0
        assert node.attached_program_ids(veth.a, ns_a) != running
    finally:
        assert sealnet(["node", "unload", "--iface", veth.a, "--netns", ns_a, "--open-sealed-flows"]) == 0
