"""The cluster's headline figures: the Dask pipeline's makespan and cluster initialisation.

Run (root, BPF, tcpdump not needed, the 'demo' extra):
    .venv/bin/python benchmarks/bench_cluster.py [--reps 5] [--sizes 10,100,1000] [--agents-max 1000]
        [--nodes-per-agent K]

1. Pipeline makespan: the genomics Dask workflow (scripts/genomics_dask.py)
   on a 2-nodes-per-domain cluster of examples/genomics.policy, three ways:
   plaintext (the namespaces, no data plane), Dask's own TLS (`tls://`, a
   private CA: what a Dask user would pick) on the same namespaces, and
   sealnet (`cluster up`: every node's agent loaded and keyed), three
   clusters side by side with their runs interleaved. Each figure is the
   median of `reps` runs after one warm-up run (which also checks the
   result); ratios are to plaintext measured in the same run.
2. The wan path: hospital-n1 -> lab-n1 on the `align` stage's port (sealed
   by the policy) across the wan namespace, 64-byte TCP round trips and
   iperf3 TCP throughput, plaintext against sealnet.
3. Initialisation, by phase, for clusters of 10, 100, 1,000 nodes (two TEE
   domains with /20 node ranges, a generated policy): bundle, topology, keys,
   nodes (agents loaded, keyed, enforcing), with the CPU seconds the agent
   and control plane processes used per node. Sizes above --agents-max nodes
   measure the topology only and say so. The cluster groups a domain's nodes
   into agent processes (--nodes-per-agent, default: the cluster's choice).

Writes cluster-<time>.json, .md and .png under --out. Everything created is
removed on exit, also on failure.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from sealnet.compiler.frontend import compile_text, load_policy  # noqa: E402
from sealnet.runtime import netns  # noqa: E402
from sealnet.runtime.cluster import lifecycle, topology  # noqa: E402

genomics_dask = importlib.import_module("genomics_dask")
POLICY = ROOT / "examples" / "genomics.policy"

SCALE_POLICY = """policy "scale" version 1
domain alpha {{ tee sev-snp; nodes 198.18.16.0/20 }}
domain beta  {{ tee tdx;     nodes 198.18.32.0/20 }}
rule ab: seal tcp from alpha to beta
rule ba: seal tcp from beta to alpha
rule aa: allow from alpha to alpha
rule bb: allow from beta to beta
default deny
"""


def bench_pipeline(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Three clusters side by side (each its own wan namespace, so their
    addresses may repeat), one Dask deployment each, runs interleaved
    round-robin so that the machine's load drifts over all three alike."""
    policy, _ = load_policy(str(POLICY))
    results: dict[str, Any] = {}
    layouts = []
    deployments: dict[str, Any] = {}
    state_dir = str(work / "sealnet-cluster")
    try:
        for name, tls in (("plaintext", False), ("dask-tls", True)):
            layout = topology.plan(policy, 2, "bp" + os.urandom(3).hex())
            layouts.append(layout)
            topology.build(layout)
            deployments[name] = genomics_dask.deploy(layout, policy, work / name, tls=tls)
        try:
            state = lifecycle.up(str(POLICY), 2, state_dir)
            assert state.layout is not None
            deployments["sealnet"] = genomics_dask.deploy(state.layout, policy, work / "sealnet")
        except Exception as exc:
            results["sealnet"] = {"unavailable": str(exc).splitlines()[0][:300]}
            print(f"pipeline sealnet unavailable: {results['sealnet']['unavailable']}", flush=True)
        runs: dict[str, list[float]] = {name: [] for name in deployments}
        checked: dict[str, bool] = {}
        for name, dep in deployments.items():  # warm-up, and the result is right
            checked[name] = bool(dep.run(samples=args.samples, reads=args.reads, check=True)["checked"])
        for _ in range(args.reps):
            for name, dep in deployments.items():
                runs[name].append(dep.run(samples=args.samples, reads=args.reads, check=False)["makespan_s"])
        for name, times in runs.items():
            results[name] = {"median_s": statistics.median(times), "runs_s": times, "checked": checked[name]}
            print(f"pipeline {name:<10} {statistics.median(times):.3f} s  runs {', '.join(f'{t:.3f}' for t in times)}",
                  flush=True)
    finally:
        for dep in deployments.values():
            dep.stop()
        for layout in layouts:
            topology.teardown(layout.cluster_id)
        lifecycle.down(state_dir)
    base = results["plaintext"]["median_s"]
    for r in results.values():
        if "median_s" in r:
            r["ratio"] = r["median_s"] / base
            r["penalty_pct"] = (r["ratio"] - 1) * 100
    return results


def _tcp_rtt_us(src: topology.Host, dst: topology.Host, port: int, count: int) -> float:
    """Median round trip of a 64-byte TCP request/response, src -> dst:port (through the wan)."""
    ready = threading.Event()

    def serve() -> None:
        with socket.create_server((dst.address, port)) as server:
            server.settimeout(30)
            ready.set()
            conn, _ = server.accept()
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                while data := conn.recv(64):
                    conn.sendall(data)

    thread = threading.Thread(target=netns.run_in_netns, args=(dst.netns, serve), daemon=True)
    thread.start()
    ready.wait(10)

    def ping() -> list[float]:
        times = []
        with socket.create_connection((dst.address, port), timeout=10) as conn:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            payload = b"x" * 64
            for i in range(count + 50):
                start = time.perf_counter_ns()
                conn.sendall(payload)
                got = 0
                while got < 64:
                    got += len(conn.recv(64 - got))
                if i >= 50:  # warm-up
                    times.append(time.perf_counter_ns() - start)
        return times

    times = netns.run_in_netns(src.netns, ping)
    thread.join(10)
    return statistics.median(times) / 1000


def _iperf_gbit_s(src: topology.Host, dst: topology.Host, port: int, seconds: int) -> float:
    server = subprocess.Popen(["ip", "netns", "exec", dst.netns, "iperf3", "-s", "-1", "-B", dst.address, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["ip", "netns", "exec", src.netns, "iperf3", "-c", dst.address, "-p", str(port),
                                  "-t", str(seconds), "-J"], capture_output=True, timeout=seconds + 30)
            end = json.loads(out.stdout or b"{}").get("end", {}) if out.returncode == 0 else {}
            if "sum_received" in end:
                return float(end["sum_received"]["bits_per_second"]) / 1e9
            time.sleep(0.2)
        raise RuntimeError("iperf3 never connected")
    finally:
        server.kill()
        server.wait(10)


def bench_wan(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """hospital-n1 -> lab-n1:7001 (the `align` stage's port, sealed by the
    policy) across the wan namespace: 64-byte TCP round trips and iperf3 TCP
    throughput, plaintext (no data plane) against sealnet (attested nodes)."""
    policy, _ = load_policy(str(POLICY))
    port = genomics_dask.stage_port(policy, "align")
    out: dict[str, Any] = {}
    layout = topology.plan(policy, 1, "bw" + os.urandom(3).hex())
    state_dir = str(work / "wan-cluster")
    try:
        topology.build(layout)
        configs: list[tuple[str, topology.Layout]] = [("plaintext", layout)]
        state = lifecycle.up(str(POLICY), 1, state_dir)
        assert state.layout is not None
        configs.append(("sealnet", state.layout))
        for name, lay in configs:
            src, dst = lay.host("hospital-n1"), lay.host("lab-n1")
            rtts = [_tcp_rtt_us(src, dst, port, args.pings) for _ in range(args.reps_wan)]
            gbits = [_iperf_gbit_s(src, dst, port, args.seconds) for _ in range(args.reps_wan)]
            out[name] = {"tcp_rtt_us": statistics.median(rtts), "tcp_gbit_s": statistics.median(gbits)}
            print(f"wan {name:<10} TCP RTT {out[name]['tcp_rtt_us']:.1f} us, iperf3 {out[name]['tcp_gbit_s']:.2f} Gbit/s",
                  flush=True)
    finally:
        topology.teardown(layout.cluster_id)
        lifecycle.down(state_dir)
    base = out["plaintext"]
    for r in out.values():
        r["rtt_added_us"] = r["tcp_rtt_us"] - base["tcp_rtt_us"]
        r["throughput_ratio"] = r["tcp_gbit_s"] / base["tcp_gbit_s"]
    return out


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process (nsenter execs the agent: same pid)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_init(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    policy_path = work / "scale.policy"
    policy_path.write_text(SCALE_POLICY.format())
    policy, diags = compile_text(SCALE_POLICY.format(), str(policy_path))
    assert policy is not None, diags
    rows = []
    for size in args.sizes:
        per_domain = max(1, size // 2)
        row: dict[str, Any] = {"nodes": per_domain * 2}
        agents_error = None
        if per_domain * 2 <= args.agents_max:
            state_dir = str(work / f"init-{size}")
            try:
                load = os.getloadavg()[0]
                state = lifecycle.up(str(policy_path), per_domain, state_dir, timeout=600,
                                     nodes_per_agent=args.nodes_per_agent)
                row["phases_s"] = dict(state.phases)
                row["hosts"] = len(state.layout.hosts) if state.layout else 0
                agents = [p for p in state.processes if p.role == "node"]
                row["agents"] = len(agents)
                row["agent_cpu_s_per_node"] = sum(_cpu_seconds(p.pid) for p in agents) / row["nodes"]
                row["controlplane_cpu_s_per_node"] = sum(
                    _cpu_seconds(p.pid) for p in state.processes if p.role == "controlplane") / row["nodes"]
                row["loadavg_1m_before"] = load
                row["loadavg_1m_after"] = os.getloadavg()[0]
            except Exception as exc:
                agents_error = str(exc).splitlines()[0][:200]
            finally:
                started = time.perf_counter()
                lifecycle.down(state_dir)
                row["down_s"] = time.perf_counter() - started
        if per_domain * 2 > args.agents_max or agents_error:
            layout = topology.plan(policy, per_domain, "bi" + os.urandom(3).hex())
            try:
                row["phases_s"] = {"topology": topology.build(layout)}
                row["hosts"] = len(layout.hosts)
                row["note"] = (f"topology only: agents failed: {agents_error}" if agents_error
                               else f"topology only: above --agents-max {args.agents_max}")
            finally:
                started = time.perf_counter()
                topology.teardown(layout.cluster_id)
                row["down_s"] = time.perf_counter() - started
        row["enforcing_s"] = sum(v for k, v in row["phases_s"].items() if k != "bundle")
        print(f"init {row['nodes']:>5} nodes: " + ", ".join(f"{k} {v:.3f} s" for k, v in row["phases_s"].items())
              + (f", {row['agents']} agents, {row['agent_cpu_s_per_node']:.3f} agent CPU-s/node, "
                 f"{row['controlplane_cpu_s_per_node']:.3f} control-plane CPU-s/node, "
                 f"load {row['loadavg_1m_before']:.1f}->{row['loadavg_1m_after']:.1f}" if "agents" in row else "")
              + (f" ({row['note']})" if "note" in row else ""), flush=True)
        rows.append(row)
    return rows


def _markdown(doc: dict[str, Any]) -> str:
    lines = [f"# Cluster benchmark, {doc['time']}", "", f"Machine: {doc['machine']}"]
    if doc["pipeline"]:
        lines += ["", "## Pipeline makespan (genomics on Dask, 2 nodes per domain)", "",
                  "| configuration | median makespan | ratio to plaintext | penalty |", "|---|---|---|---|"]
    for name, r in doc["pipeline"].items():
        if "median_s" in r:
            lines.append(f"| {name} | {r['median_s']:.3f} s | {r['ratio']:.3f} | {r['penalty_pct']:+.1f} % |")
        else:
            lines.append(f"| {name} | unavailable: {r['unavailable']} | | |")
    if doc.get("wan"):
        lines += ["", "## The wan path (hospital-n1 -> lab-n1:7001, across the wan namespace)", "",
                  "| configuration | TCP 64 B round trip | added | iperf3 TCP | ratio |", "|---|---|---|---|---|"]
        for name, r in doc["wan"].items():
            lines.append(f"| {name} | {r['tcp_rtt_us']:.1f} us | {r['rtt_added_us']:+.1f} us | "
                         f"{r['tcp_gbit_s']:.2f} Gbit/s | {r['throughput_ratio']:.3f} |")
    lines += ["", "## Initialisation by phase", "",
              "| nodes | hosts | agents | phase seconds | enforcing (excl. bundle) | agent CPU-s/node | "
              "control-plane CPU-s/node | load 1m | down |", "|---|---|---|---|---|---|---|---|---|"]
    for row in doc["init"]:
        phases = ", ".join(f"{k} {v:.3f}" for k, v in row["phases_s"].items())
        cpu = (f"{row['agent_cpu_s_per_node']:.3f} | {row['controlplane_cpu_s_per_node']:.3f} | "
               f"{row['loadavg_1m_before']:.1f} -> {row['loadavg_1m_after']:.1f}") if "agents" in row else "| |"
        lines.append(f"| {row['nodes']} | {row['hosts']} | {row.get('agents', '-')} | "
                     f"{phases}{' (' + row['note'] + ')' if 'note' in row else ''} "
                     f"| {row['enforcing_s']:.3f} s | {cpu} | {row['down_s']:.3f} s |")
    return "\n".join(lines) + "\n"


def _plot(doc: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    names = [n for n, r in doc["pipeline"].items() if "median_s" in r]
    a.bar(names, [doc["pipeline"][n]["median_s"] for n in names], color=["#888", "#c55", "#5a5"][: len(names)])
    a.set_ylabel("makespan (s)")
    a.set_title("genomics pipeline on Dask")
    sizes = [str(r["nodes"]) for r in doc["init"]]
    bottom = [0.0] * len(sizes)
    for phase in ("topology", "keys", "control planes", "nodes"):
        vals = [r["phases_s"].get(phase, 0.0) for r in doc["init"]]
        b.bar(sizes, vals, bottom=bottom, label=phase)
        bottom = [x + y for x, y in zip(bottom, vals)]
    b.set_xlabel("nodes")
    b.set_ylabel("seconds")
    b.set_title("initialisation by phase (bundle excluded)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description="pipeline makespan and cluster initialisation")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10, 100, 1000])
    parser.add_argument("--agents-max", type=int, default=1000, help="above this many nodes, the topology only")
    parser.add_argument("--nodes-per-agent", type=int, default=None,
                        help="nodes per `sealnet node run` process (default: the cluster's choice)")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--skip-wan", action="store_true")
    parser.add_argument("--pings", type=int, default=2000, help="TCP round trips per wan measurement")
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 duration per wan measurement")
    parser.add_argument("--reps-wan", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    with tempfile.TemporaryDirectory(prefix="sealnet-bench-cluster-") as tmp:
        work = Path(tmp)
        doc: dict[str, Any] = {"time": stamp, "machine": f"{platform.node()} {platform.release()} "
                               f"{os.cpu_count()} CPUs {platform.processor() or platform.machine()}",
                               "reps": args.reps, "samples": args.samples, "reads": args.reads}
        doc["pipeline"] = {} if args.skip_pipeline else bench_pipeline(args, work)
        doc["wan"] = {} if args.skip_wan else bench_wan(args, work)
        doc["init"] = bench_init(args, work)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"cluster-{stamp}.json").write_text(json.dumps(doc, indent=1))
    (out / f"cluster-{stamp}.md").write_text(_markdown(doc))
    plotted = _plot(doc, out / f"cluster-{stamp}.png")
    print(_markdown(doc))
    print(f"wrote {out}/cluster-{stamp}.json, .md" + (", .png" if plotted else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
