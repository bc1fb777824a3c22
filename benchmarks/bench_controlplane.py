"""Control-plane speed: evidence verifications/s, MAKE + key releases/s, and N simulated nodes to keys.

    .venv/bin/python benchmarks/bench_controlplane.py [--nodes 10,100,1000] [--format json]

The control plane runs in its own process (the real aiohttp server, SQLite
with synchronous=FULL, sealed epoch secrets); the nodes run concurrently in
this process, each doing the whole node side of MAKE (its evidence, the
control plane's evidence verified and judged, the release opened and parsed
as a key file). Evidence is simulated (ECDSA P-384 platform keys in the SNP
report layout), so hardware report latency is not in these figures.

Baseline measured in the same run: the same number of HTTP round trips to a
bare aiohttp endpoint (transport only), so the ratio is the price of
attestation, key exchange and durable state on top of the transport. The
reference system initialises 100 nodes in 1.5 s; the aim is 0.75 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import aiohttp
from aiohttp import web

from sealnet.runtime import control_client
from sealnet.runtime.attest.evidence import BUNDLE_REGISTER, LogEntry
from sealnet.runtime.attest.sim import SimPlatform, public_fingerprint
from sealnet.runtime.attest.verifier import VerifierConfig, verify
from sealnet.runtime.controlplane import server
from sealnet.runtime.controlplane.broker import Broker, BrokerConfig
from sealnet.runtime.controlplane.state import State
from sealnet.runtime.keyschedule import Sealer

LAUNCH = hashlib.sha384(b"bench guest image").digest()
BUNDLE = "sha384:" + hashlib.sha384(b"bench bundle").hexdigest()
REFERENCE_100 = 1.5
AIM_100 = 0.75


def manifest() -> dict[str, Any]:
    return {"format": 1, "policy": {"name": "bench", "version": 1},
            "domains": [{"id": i + 1, "name": n, "tee": "sim", "nodes": [f"198.18.{i + 1}.0/24"],
                         "measurements": ["sha384:" + LAUNCH.hex()], "control_plane": cp}
                        for i, (n, cp) in enumerate((("a", "127.0.0.1:1"), ("b", None), ("c", None)))]}


def _serve(cp_pem: bytes, trusted: list[str], db: str, conn: Any) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(cp_pem, None)
    cp = SimPlatform(key, LAUNCH)  # type: ignore[arg-type]
    verifier = VerifierConfig(sim_platforms=frozenset(trusted))

    async def main() -> None:
        state = State(db, domain="a", sealer=Sealer(cp.sealing_key()))
        broker = Broker(BrokerConfig("a", manifest(), BUNDLE, cp.attest, verifier), state)
        running = await server.start(broker, "127.0.0.1", 0)
        bare = web.Application()

        async def echo(request: web.Request) -> web.Response:
            return web.json_response({"ok": len(await request.read())})

        async def cpu(request: web.Request) -> web.Response:
            t = os.times()
            return web.json_response({"cpu": t.user + t.system})

        bare.router.add_post("/echo", echo)
        bare.router.add_get("/cpu", cpu)
        runner = web.AppRunner(bare, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        conn.send((running.port, runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


async def _nodes(url: str, n: int, node: SimPlatform, verifier: VerifierConfig, limit: int) -> tuple[float, list[int]]:
    m = manifest()
    connector = aiohttp.TCPConnector(limit=limit)
    # Many nodes share this process's connection pool; a real node has its own, so waiting for a pooled
    # connection must not count against the per-request timeout.
    timeout = aiohttp.ClientTimeout(total=300, sock_connect=5, sock_read=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        start = time.perf_counter()
        releases = await asyncio.gather(*(control_client.attest(url, domain="a", manifest=m, bundle_measurement=BUNDLE,
                                                                attester=node.attest, verifier=verifier, http=http)
                                          for _ in range(n)))
        elapsed = time.perf_counter() - start
    senders = [r.sender for r in releases]
    assert len(set(senders)) == n, "two nodes share a sender id"
    assert all(r.key_file().pairs for r in releases)
    return elapsed, senders


async def _server_cpu(url: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return float((await resp.json())["cpu"])


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _bare(url: str, n: int, limit: int) -> float:
    body = {"x": "0" * 2000}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)) as http:
        async def two() -> None:
            for _ in range(2):  # MAKE is two round trips
                async with http.post(url, json=body) as resp:
                    await resp.read()
        start = time.perf_counter()
        await asyncio.gather(*(two() for _ in range(n)))
        return time.perf_counter() - start


def verifications_per_second(node: SimPlatform, verifier: VerifierConfig, seconds: float = 1.0) -> float:
    log = (LogEntry(BUNDLE_REGISTER, "bundle", BUNDLE),)
    evidence = node.attest(os.urandom(64), log)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        verify(evidence, verifier)
        count += 1
    return count / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (median reported)")
    parser.add_argument("--limit", type=int, default=100, help="concurrent connections from the nodes")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    args = parser.parse_args()
    sizes = [int(x) for x in args.nodes.split(",")]
    cp, node = SimPlatform.generate(LAUNCH), SimPlatform.generate(LAUNCH)
    trusted = [public_fingerprint(cp.key.public_key()), public_fingerprint(node.key.public_key())]
    from cryptography.hazmat.primitives import serialization

    pem = cp.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    verifier = VerifierConfig(sim_platforms=frozenset(trusted))
    results: dict[str, Any] = {"verifications_per_s": verifications_per_second(node, verifier), "sizes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        parent, child = mp.Pipe()
        proc = mp.get_context("fork").Process(target=_serve, args=(pem, trusted, f"{tmp}/cp.db", child), daemon=True)
        proc.start()
        try:
            make_port, bare_port = parent.recv()
            url, bare_url = f"http://127.0.0.1:{make_port}", f"http://127.0.0.1:{bare_port}/echo"
            asyncio.run(_nodes(url, 5, node, verifier, args.limit))  # warm up imports and connections
            cpu_url = f"http://127.0.0.1:{bare_port}/cpu"
            for n in sizes:
                server_before, node_before = asyncio.run(_server_cpu(cpu_url)), _own_cpu()
                runs = [asyncio.run(_nodes(url, n, node, verifier, args.limit))[0] for _ in range(args.repeat)]
                server_cpu = asyncio.run(_server_cpu(cpu_url)) - server_before
                node_cpu = _own_cpu() - node_before
                bare = [asyncio.run(_bare(bare_url, n, args.limit)) for _ in range(args.repeat)]
                t, b = statistics.median(runs), statistics.median(bare)
                # CPU per release does not depend on what else the shared machine runs
                results["sizes"][n] = {"seconds": t, "releases_per_s": n / t, "transport_seconds": b,
                                       "ratio_to_transport": t / b,
                                       "server_cpu_ms_per_release": 1000 * server_cpu / (n * args.repeat),
                                       "node_cpu_ms_per_release": 1000 * node_cpu / (n * args.repeat)}
        finally:
            proc.kill()
            proc.join()
    if 100 in results["sizes"]:
        t100 = results["sizes"][100]["seconds"]
        results["100_nodes_vs_reference_1.5s"] = t100 / REFERENCE_100
        results["100_nodes_vs_aim_0.75s"] = t100 / AIM_100
    if args.format == "json":
        print(json.dumps(results, indent=2))
    else:
        print(f"evidence verifications (sim, in process): {results['verifications_per_s']:.0f}/s")
        for n, r in results["sizes"].items():
            print(f"{n:>5} nodes to keys: {r['seconds']:.3f} s ({r['releases_per_s']:.0f} MAKE+releases/s); "
                  f"transport only {r['transport_seconds']:.3f} s; ratio {r['ratio_to_transport']:.1f}x; "
                  f"CPU per release: control plane {r['server_cpu_ms_per_release']:.2f} ms, "
                  f"node {r['node_cpu_ms_per_release']:.2f} ms")
        if "100_nodes_vs_reference_1.5s" in results:
            print(f"100 nodes: {results['100_nodes_vs_reference_1.5s']:.2f} of the reference's 1.5 s, "
                  f"{results['100_nodes_vs_aim_0.75s']:.2f} of the 0.75 s aim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
