"""Data-plane cost: per-packet decision time, compile time, object size, verifier work.

Run (root, BPF): .venv/bin/python benchmarks/bench_datapath.py [--rules 10,1000,10000] [--format json]

For each generated policy (benchmarks/gen_policy.py): table build + render + clang
time, object size, the verifier's processed-instruction count (bpf_prog_info
verified_insns), and ns/packet from BPF_PROG_TEST_RUN with `repeat` over packets
that hit rules spread over the whole policy (and some hitting the default).
The baseline, measured in the same run, is a trivial TC program that returns
TC_ACT_OK: the ratio shows what the policy adds to the kernel's test-run overhead.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sealnet.compiler.build import compile_c, find_clang  # noqa: E402
from sealnet.compiler.codegen import render  # noqa: E402
from sealnet.compiler.frontend import compile_text  # noqa: E402
from sealnet.compiler.ir import PORTED_PROTOCOLS, Packet  # noqa: E402
from sealnet.compiler.tables import build_tables  # noqa: E402
from sealnet.compiler.validate import ipv4_frame  # noqa: E402
from gen_policy import generate  # noqa: E402
from sealnet.contracts import abi, libbpf  # noqa: E402

BASELINE_C = """
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("tc") int pass(struct __sk_buff *skb) { return 0; }
char LICENSE[] SEC("license") = "GPL";
"""
REPEAT = 200_000
PACKETS = 16


def per_packet_ns(prog: libbpf.Program, frames: list[bytes]) -> float:
    """Median over frames of the kernel-reported mean ns per run."""
    samples = sorted(prog.test_run(f, repeat=REPEAT).duration_ns for f in frames)
    return float(samples[len(samples) // 2])


def sample_frames(policy, rnd: random.Random) -> list[bytes]:
    frames = []
    for _ in range(PACKETS):
        rule = rnd.choice(policy.rules)
        c = rule.match.cubes[0]
        proto = c.proto[0][0] if c.proto[0][0] in PORTED_PROTOCOLS or c.proto[0][1] < 6 else 6
        frames.append(ipv4_frame(Packet(c.src[0][0], c.dst[0][0], proto, 40000, c.dport[0][0])))
    frames.append(ipv4_frame(Packet(0x0A000001, 0x0A000002, 6, 1, 2)))  # default
    return frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", default="10,1000,10000")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    args = ap.parse_args()
    clang = find_clang()
    rnd = random.Random(11)

    with libbpf.BpfObject.open_memory(compile_c(BASELINE_C, clang), "baseline") as base:
        base.load()
        base_ns = per_packet_ns(base.program("pass"), [ipv4_frame(Packet(1, 2, 6, 1, 2))] * 5)

    rows = []
    for n in (int(x) for x in args.rules.split(",")):
        text = generate(n)
        t0 = time.perf_counter()
        policy, _ = compile_text(text, f"bench{n}")
        assert policy is not None
        t1 = time.perf_counter()
        tables = build_tables(policy)
        source = render(policy, tables)
        t2 = time.perf_counter()
        obj_bytes = compile_c(source, clang)
        t3 = time.perf_counter()
        with libbpf.BpfObject.open_memory(obj_bytes, f"bench{n}") as obj:
            obj.load()
            t4 = time.perf_counter()
            prog = obj.program(abi.EGRESS_PROGRAM)
            ns = per_packet_ns(prog, sample_frames(policy, rnd))
            rows.append(
                {
                    "rules": n,
                    "frontend_s": round(t1 - t0, 3),
                    "tables_render_s": round(t2 - t1, 3),
                    "clang_s": round(t3 - t2, 3),
                    "load_verify_s": round(t4 - t3, 3),
                    "object_bytes": len(obj_bytes),
                    "verified_insns": prog.info().verified_insns,
                    "xlated_bytes": prog.info().xlated_prog_len,
                    "ns_per_packet": ns,
                    "baseline_ns": base_ns,
                    "ratio_vs_baseline": round(ns / base_ns, 2) if base_ns else None,
                    "added_ns": round(ns - base_ns, 1),
                    "tables": tables.sizes,
                }
            )
    if args.format == "json":
        print(json.dumps({"clang": clang.version_text, "repeat": REPEAT, "rows": rows}, indent=2))
        return
    print(f"{clang.version_text}; baseline pass-through TC program: {base_ns:.0f} ns/run")
    print(f"{'rules':>6} {'front s':>8} {'tab+rend s':>10} {'clang s':>8} {'load s':>7} {'obj B':>8} "
          f"{'ver insns':>9} {'ns/pkt':>7} {'x base':>7} {'added ns':>8}")
    for r in rows:
        print(f"{r['rules']:>6} {r['frontend_s']:>8} {r['tables_render_s']:>10} {r['clang_s']:>8} "
              f"{r['load_verify_s']:>7} {r['object_bytes']:>8} {r['verified_insns']:>9} {r['ns_per_packet']:>7.0f} "
              f"{r['ratio_vs_baseline']:>7} {r['added_ns']:>8}")


if __name__ == "__main__":
    main()
