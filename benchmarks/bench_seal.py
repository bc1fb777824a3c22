"""Sealing cost: per packet in the kernel, and over a veth pair, against plaintext in the same run.

Run (root, BPF, iperf3): .venv/bin/python benchmarks/bench_seal.py [--samples 400] [--seconds 3] [--format json]

1. BPF_PROG_TEST_RUN, payloads of 64, 512 and 1400 bytes, for each suite a
   policy's `cipher` chooses: chacha20-poly1305 (plain eBPF), and aes-ccm with
   the constant-time `aes-fixed-time` driver and the table-based `aes-generic`:
   seal (egress) and verify+open (ingress), with each build's verifier count
   (processed instructions) and load time. Each sample is one run on a fresh
   packet (a sealed packet cannot be re-run: the program changes it, and a
   replayed one is dropped early), timed by the kernel; the figure is the
   median. The baseline is the same data plane passing a plaintext packet of
   the same size under an `allow plaintext` rule.
2. Two namespaces joined by a veth pair, both nodes loaded by the node agent:
   the round-trip time of 64-byte UDP ping-pong (median) and iperf3 TCP
   throughput, sealed against a policy that allows the same traffic in
   plaintext.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # testbed, packets

from sealnet.compiler.build import build_object  # noqa: E402
from sealnet.compiler.frontend import compile_text  # noqa: E402
from sealnet.contracts import abi  # noqa: E402
from sealnet.runtime import node, seal_keys, seal_wire  # noqa: E402
from sealnet.contracts.libbpf import BpfObject  # noqa: E402
from sealnet.runtime.netns import popen, run, run_in_netns  # noqa: E402
from testbed import Topology, echo, udp_socket  # noqa: E402
from packets import ETH, udp  # noqa: E402

SEALED = '''policy "bench" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule plain: allow plaintext udp from a to b port 9999
rule ab: seal from a to b
rule ba: seal from b to a
'''
PLAINTEXT = '''policy "bench" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule ab: allow plaintext from a to b
rule ba: allow plaintext from b to a
'''
IP_A, IP_B = "198.18.0.1", "198.18.0.2"
SIZES = (64, 512, 1400)


def _policy(text: str):  # type: ignore[no-untyped-def]
    policy, diagnostics = compile_text(text, "bench.policy")
    if policy is None:
        raise SystemExit(f"bench policy does not compile: {diagnostics}")
    return policy


def _key_file(pair_key: bytes, sender: int | None) -> seal_keys.KeyFile:
    return seal_keys.parse_key_file(seal_keys.format_key_file(sender, {("a", "b"): {"current": (1, pair_key)}}))


def _median_ns(prog, frames: list[bytes]) -> float:  # type: ignore[no-untyped-def]
    """Median kernel time of one run per frame; every run must pass (else it timed a drop)."""
    times = []
    for f in frames:
        result = prog.test_run(f, data_size_out=4096)
        if result.retval != abi.TC_ACT_OK:
            raise SystemExit(f"{prog.name}: a benchmark packet was dropped (retval {result.retval})")
        times.append(result.duration_ns)
    return float(statistics.median(times))


# (policy `cipher`, AES driver): ChaCha20-Poly1305 needs none; AES-CCM with each kernel driver.
SUITES = (("chacha20-poly1305", None),) + tuple(("aes-ccm", driver) for driver in abi.AES_DRIVERS)


def kernel_costs(samples: int, state_dir: str) -> list[dict[str, object]]:
    rows = []
    for cipher, driver in SUITES:
        suite = seal_wire.SUITE_BY_NAME[cipher]
        built = build_object(_policy(SEALED + f"cipher {cipher}\n"), aes_implementation=driver or abi.AES_DRIVERS[0])
        obj = BpfObject.open_memory(built, "bench")
        started = time.perf_counter()
        obj.load()
        load_ms = round((time.perf_counter() - started) * 1e3, 1)
        try:
            pair_key = os.urandom(seal_wire.PAIR_KEY_LEN)
            handles = node.seal_handles(obj)
            assert handles is not None
            seal_keys.install(handles, _key_file(pair_key, None), {"a": 1, "b": 2},
                              sender=int.from_bytes(os.urandom(3), "big") + 1, ledger_dir=state_dir)
            open_key = seal_wire.direction_key(pair_key, "b", "a", 1, suite)
            egress, ingress = obj.program(abi.EGRESS_PROGRAM), obj.program(abi.INGRESS_PROGRAM)
            verified = {"egress": egress.info().verified_insns, "ingress": ingress.info().verified_insns}
            for size in SIZES:
                payload = os.urandom(size)
                plain = ETH + udp(IP_A, IP_B, payload, dport=9999)
                baseline = _median_ns(egress, [plain] * samples)
                seal = _median_ns(egress, [ETH + udp(IP_A, IP_B, payload)] * samples)
                packet = udp(IP_B, IP_A, payload)
                sealed = [ETH + seal_wire.seal(packet, open_key, seal_wire.SealHeader(1, size, 0, seq, suite=suite.id))
                          for seq in range(1, samples + 1)]
                opened = _median_ns(ingress, sealed)  # one stream per size: no replays
                rows.append({"suite": cipher + (f" ({driver})" if driver else ""), "payload": size,
                             "baseline_ns": baseline, "verified_insns": verified, "load_ms": load_ms,
                             "seal_ns": seal, "open_ns": opened,
                             "seal_x_baseline": round(seal / baseline, 1), "open_x_baseline": round(opened / baseline, 1),
                             "seal_ns_per_byte": round((seal - baseline) / size, 2)})
        finally:
            obj.close()
    return rows


# ------------------------------------------------------------------ over a veth pair


def _rtt_us(ns_a: str, ns_b: str, count: int) -> float:
    server, client = run_in_netns(ns_b, udp_socket, IP_B, 7000), run_in_netns(ns_a, udp_socket, IP_A, 0)
    stop = threading.Event()
    echoer = threading.Thread(target=echo, args=(server, stop), daemon=True)
    echoer.start()
    times = []
    try:
        payload = os.urandom(64)
        for _ in range(count):
            start = time.perf_counter_ns()
            client.sendto(payload, (IP_B, 7000))
            client.recvfrom(2048)
            times.append(time.perf_counter_ns() - start)
    finally:
        stop.set()
        echoer.join(timeout=2)
        server.close()
        client.close()
    return statistics.median(times) / 1000


def _iperf_mbit(ns_a: str, ns_b: str, seconds: int) -> float:
    server = popen(ns_b, ["iperf3", "-s", "-1", "-B", IP_B], stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
    try:
        for _ in range(50):
            out = run(ns_a, ["iperf3", "-c", IP_B, "-t", str(seconds), "-J"], capture_output=True,
                      timeout=seconds + 30)
            if out.returncode == 0:
                result = json.loads(out.stdout)
                if "sum_received" in result.get("end", {}):  # else the server was not listening yet
                    return result["end"]["sum_received"]["bits_per_second"] / 1e6
            time.sleep(0.1)
        raise RuntimeError("iperf3 never connected")
    finally:
        server.kill()
        server.wait(timeout=5)


def veth_figures(policy_text: str, sealed: bool, seconds: int, pings: int, state_dir: str) -> dict[str, float]:
    obj = build_object(_policy(policy_text))
    pair_key = os.urandom(seal_wire.PAIR_KEY_LEN)
    with Topology() as topo:
        ns_a, ns_b, veth = topo.pair("198.18.0.0/30")
        loaded = []
        try:
            for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)):
                keys = _key_file(pair_key, int.from_bytes(os.urandom(3), "big") + 1) if sealed else None
                node.load_object(obj, iface=iface, netns=ns, measurement="sha384:bench", policy="bench",
                                 domain_ids={"a": 1, "b": 2}, keys=keys)
                loaded.append((iface, ns))
            return {"rtt_us": round(_rtt_us(ns_a, ns_b, pings), 1),
                    "tcp_mbit_s": round(_iperf_mbit(ns_a, ns_b, seconds), 1)}
        finally:
            for iface, ns in loaded:
                node.unload(iface, ns, open_sealed_flows=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400, help="packets per kernel figure")
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 duration")
    parser.add_argument("--pings", type=int, default=2000, help="UDP round trips")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node.STATE_DIR = os.path.join(tmp, "state")
        rows = kernel_costs(args.samples, node.STATE_DIR)
        plain = veth_figures(PLAINTEXT, False, args.seconds, args.pings, node.STATE_DIR)
        sealed = veth_figures(SEALED, True, args.seconds, args.pings, node.STATE_DIR)
    veth = {"plaintext": plain, "sealed": sealed,
            "rtt_x_plaintext": round(sealed["rtt_us"] / plain["rtt_us"], 2),
            "tcp_throughput_x_plaintext": round(sealed["tcp_mbit_s"] / plain["tcp_mbit_s"], 3)}
    if args.format == "json":
        print(json.dumps({"kernel": rows, "veth": veth}, indent=2))
        return 0
    print("per packet, BPF_PROG_TEST_RUN (median ns; baseline: the same program passing plaintext)")
    print(f"{'suite':32} {'payload':>7} {'baseline':>9} {'seal':>8} {'x':>5} {'open':>8} {'x':>5} {'ns/B':>6}")
    for r in rows:
        print(f"{r['suite']:32} {r['payload']:>7} {r['baseline_ns']:>9.0f} {r['seal_ns']:>8.0f} "
              f"{r['seal_x_baseline']:>5} {r['open_ns']:>8.0f} {r['open_x_baseline']:>5} {r['seal_ns_per_byte']:>6}")
    print("\nverifier (processed instructions) and load time per build")
    for r in rows[::len(SIZES)]:
        print(f"{r['suite']:32} egress {r['verified_insns']['egress']:>7} ingress {r['verified_insns']['ingress']:>7}"  # type: ignore[index]
              f"  load {r['load_ms']} ms")
    print(f"\nveth pair between namespaces ({SUITES[0][0]}, the policy default)")
    print(f"64-byte UDP RTT: plaintext {plain['rtt_us']} us, sealed {sealed['rtt_us']} us "
          f"(x{veth['rtt_x_plaintext']})")
    print(f"TCP throughput:  plaintext {plain['tcp_mbit_s']} Mbit/s, sealed {sealed['tcp_mbit_s']} Mbit/s "
          f"(x{veth['tcp_throughput_x_plaintext']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
