"""Node agent speed: load to enforcing, atomic replace, and packets lost per key rotation.

    sudo .venv/bin/python benchmarks/bench_node.py [--repeat 5] [--rotations 5] [--json]

1. For each policy in examples/ and a generated 10,000-rule policy: the time
   from `load` (signature and measurement checked, kernel verifier, keys,
   pins, journal, interface, attach) to both programs enforcing, for a first
   load and for an atomic replace of the running load. The baseline in the
   same run is the kernel's part alone (BPF object load and verifier),
   so the ratio shows what the agent adds. A sealing load includes the
   bypass guard (BPF LSM programs loaded, verified and attached); where the
   kernel cannot run it the benchmark accepts the risk (as
   --allow-qdisc-bypass does) and says so: its loads then only probe for it.
2. Rotation under load: iperf3 UDP both ways at 10,000 and 100,000 packets/s
   (64-byte payloads) while the keys rotate; packets lost to rotation are the
   seal_unknown_key / replay / bad_tag / no_key drops on either node
   (must be 0). iperf3's own loss figure (socket buffers, CPU) is shown too.
Runs in two fresh namespaces over a veth; everything is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # testbed, packets

from gen_policy import generate  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from sealnet.compiler.build import compile_c, find_clang  # noqa: E402
from sealnet.compiler.codegen import render  # noqa: E402
from sealnet.compiler.frontend import compile_text  # noqa: E402
from sealnet.compiler.manifest import build_manifest  # noqa: E402
from sealnet.compiler.tables import build_tables  # noqa: E402
from sealnet.contracts.bundle import load_bundle, pack  # noqa: E402
from sealnet.contracts.libbpf import BpfObject  # noqa: E402
from sealnet.runtime import node, node_counters, node_guard, seal_keys  # noqa: E402
from sealnet.runtime.netns import popen  # noqa: E402
from testbed import Topology  # noqa: E402
from sealnet.runtime.netns import run as ns_run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Where the bypass guard cannot run, load anyway (the figures then lack its cost; the output says so).
ACCEPT_RISK = os.geteuid() == 0 and node_guard.unavailable_reason() is not None
ROTATION_DROPS = ("seal_unknown_key_drop", "seal_replay_drop", "seal_bad_tag_drop", "seal_no_key_drop")
SOAK = '''policy "rot" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule iperf_control: allow plaintext tcp from a to b
rule iperf_control_back: allow plaintext tcp from b to a
rule ab: seal udp from a to b
rule ba: seal udp from b to a
'''


def _bundle(text: str, name: str) -> tuple[bytes, object]:
    """A signed bundle of the policy (built as `policyc compile` does, without verification),
    and the authority's public key."""
    policy, diagnostics = compile_text(text, f"{name}.policy")
    assert policy is not None, [d.message for d in diagnostics]
    clang = find_clang()
    object_bytes = compile_c(render(policy), clang)
    manifest = build_manifest(policy, object_bytes, build_tables(policy), clang_version=clang.version_text)
    authority = Ed25519PrivateKey.generate()
    return pack(manifest, object_bytes, authority), authority.public_key()


def _timed_load(data: bytes, key: object, iface: str, ns: str) -> tuple[float, str]:
    """Seconds from bundle to enforcing, and the load's bypass guard (node_guard.LSM, ...)."""
    started = time.perf_counter()
    verified = load_bundle(data, key)  # type: ignore[arg-type]
    state = node.load_object(verified.object_bytes, iface=iface, netns=ns, measurement=verified.measurement,
                             policy="bench", domain_ids={d["name"]: d["id"] for d in verified.manifest["domains"]},
                             rules=list(verified.manifest.get("rules", [])), allow_qdisc_bypass=ACCEPT_RISK)
    assert None not in node.attached_program_ids(iface, ns).values()
    return time.perf_counter() - started, state.qdisc_bypass_guard


def guard_probe_ms(repeat: int = 5) -> float:
    """What asking the kernel whether the bypass guard can run costs: once per process (the first
    sealing load of a `sealnet node load`, or of an agent), the answer cached after that."""
    times = []
    for _ in range(repeat):
        node_guard.kernel_refusal.cache_clear()
        started = time.perf_counter()
        node_guard.unavailable_reason()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1e3, 2)


def _kernel_only(object_bytes: bytes) -> float:
    started = time.perf_counter()
    obj = BpfObject.open_memory(object_bytes, "baseline")
    obj.load()
    elapsed = time.perf_counter() - started
    obj.close()
    return elapsed


def load_figures(repeat: int, tmp: str) -> list[dict[str, object]]:
    policies = {p.stem: p.read_text() for p in sorted((ROOT / "examples").glob("*.policy"))}
    policies["generated-10000-rules"] = generate(10_000)
    rows = []
    topo = Topology()
    try:
        ns_a, _ns_b, veth = topo.pair("198.18.0.0/30")
        for name, text in policies.items():
            data, key = _bundle(text, name)
            object_bytes = load_bundle(data, key).object_bytes  # type: ignore[arg-type]
            first, replace, kernel = [], [], []
            for _ in range(repeat):
                kernel.append(_kernel_only(object_bytes))
                seconds, guard = _timed_load(data, key, veth.a, ns_a)
                first.append(seconds)
                replace.append(_timed_load(data, key, veth.a, ns_a)[0])
                node.unload(veth.a, ns_a, open_sealed_flows=True)
            k = statistics.median(kernel)
            rows.append({"policy": name, "bundle_bytes": len(data), "qdisc_bypass_guard": guard,
                         "kernel_load_ms": round(k * 1e3, 1),
                         "first_load_to_enforcing_ms": round(statistics.median(first) * 1e3, 1),
                         "atomic_replace_ms": round(statistics.median(replace) * 1e3, 1),
                         "first_load_ratio_to_kernel": round(statistics.median(first) / k, 2),
                         "replace_ratio_to_kernel": round(statistics.median(replace) / k, 2)})
    finally:
        topo.close()
    return rows


def _keys(epoch: int, keys: dict[int, bytes]) -> seal_keys.KeyFile:
    return seal_keys.parse_key_file(seal_keys.format_key_file(None, {("a", "b"): {
        "current": (epoch, keys[epoch]), "next": (epoch + 1, keys[epoch + 1])}}))


def rotation_figures(rate: int, rotations: int, seconds: float, tmp: str) -> dict[str, object]:
    data, key = _bundle(SOAK, "rot")
    verified = load_bundle(data, key)  # type: ignore[arg-type]
    keys = {e: os.urandom(32) for e in range(1, rotations + 3)}
    topo = Topology()
    servers: list[subprocess.Popen] = []
    try:
        ns_a, ns_b, veth = topo.pair("198.18.0.0/30")
        sides = {"a": (veth.a, ns_a, "198.18.0.1"), "b": (veth.b, ns_b, "198.18.0.2")}
        for iface, ns, _ in sides.values():
            node.load_object(verified.object_bytes, iface=iface, netns=ns, measurement=verified.measurement,
                             policy="rot", domain_ids={"a": 1, "b": 2}, keys=_keys(1, keys),
                             allow_qdisc_bypass=ACCEPT_RISK)
        for _, ns, ip in sides.values():
            servers.append(popen(ns, ["iperf3", "-s", "-1", "-B", ip, "-p", "5301"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(0.5)
        bits = rate * 64 * 8
        clients = [popen(ns_a, ["iperf3", "-u", "-c", "198.18.0.2", "-p", "5301", "-l", "64", "-b", str(bits),
                                "-t", str(int(seconds)), "-J"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL),
                   popen(ns_b, ["iperf3", "-u", "-c", "198.18.0.1", "-p", "5301", "-l", "64", "-b", str(bits),
                                "-t", str(int(seconds)), "-J"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)]
        interval = seconds / (rotations + 1)
        started = time.monotonic()
        for r in range(1, rotations + 1):
            time.sleep(max(0.0, started + r * interval - time.monotonic()))
            for iface, ns, _ in sides.values():
                node.install_keys(iface, ns, _keys(r + 1, keys))
            time.sleep(interval / 3)
            for iface, ns, _ in sides.values():
                node.retire_previous_epochs(iface, ns)
        reports = [json.loads(c.communicate(timeout=seconds + 30)[0] or "{}") for c in clients]
        drops = 0
        for iface, ns, _ in sides.values():
            state = node.read_state(iface, ns)
            assert state is not None
            counts = node_counters.verdict_counts(state)
            drops += sum(counts[d][v] for d in counts for v in ROTATION_DROPS)
        sums = [r.get("end", {}).get("sum", {}) for r in reports]
        return {"target_pps_each_way": rate, "rotations": rotations, "seconds": seconds,
                "packets_sent": sum(int(s.get("packets", 0)) for s in sums),
                "lost_to_rotation": drops, "lost_to_rotation_per_rotation": drops / rotations,
                "iperf3_lost_all_causes": sum(int(s.get("lost_packets", 0)) for s in sums)}
    finally:
        for s in servers:
            s.kill()
            s.wait()
        for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)) if "veth" in locals() else ():
            if node.read_state(iface, ns) is not None:
                node.unload(iface, ns, open_sealed_flows=True)
        topo.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rotations", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=("load", "rotation"), help="run one half")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        node.STATE_DIR, node.DURABLE_DIR = os.path.join(tmp, "run"), os.path.join(tmp, "lib")
        result = {"guard_unavailable": node_guard.unavailable_reason(), "guard_probe_ms": guard_probe_ms(),
                  "load": load_figures(args.repeat, tmp) if args.only != "rotation" else [],
                  "rotation": [rotation_figures(rate, args.rotations, args.seconds, tmp)
                               for rate in (10_000, 100_000)] if args.only != "load" else []}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"bypass guard: {result['guard_unavailable'] or 'runs here'}; probing for it: {result['guard_probe_ms']} ms")
    print(f"{'policy':24} {'kernel ms':>10} {'first load ms':>14} {'replace ms':>11} {'first/kernel':>13} "
          f"{'replace/kernel':>15}  guard")
    for r in result["load"]:
        print(f"{r['policy']:24} {r['kernel_load_ms']:>10} {r['first_load_to_enforcing_ms']:>14} "
              f"{r['atomic_replace_ms']:>11} {r['first_load_ratio_to_kernel']:>13} {r['replace_ratio_to_kernel']:>15}"
              f"  {r['qdisc_bypass_guard']}")
    for r in result["rotation"]:
        print(f"rotation at {r['target_pps_each_way']} pps each way: {r['packets_sent']} sent, "
              f"{r['lost_to_rotation']} lost to rotation over {r['rotations']} rotations, "
              f"{r['iperf3_lost_all_causes']} lost to any cause (iperf3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
