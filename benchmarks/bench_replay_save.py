"""Cost of saving a node's replay stream table (runtime/replay_store.save), the work every unload and
every periodic save of `sealnet node run` does.

Run (root, BPF): .venv/bin/python benchmarks/bench_replay_save.py [--streams 1000] [--samples 20] [--format json]

Loads the test policy's sealing data plane (not attached: the save reads the same
maps through the same fds as on a node), makes a table with a random salt, places
--streams streams and a few floors, then times save() into a temporary file; the
figure is the median (and min) of --samples saves, wall and CPU time of this process.
With --per-key it also times the read the save made before batch lookups, on the same
table: a get-next-key and a lookup per set and per floor group (Map.items()), each set
decoded into its ways.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # sealing

from sealnet.contracts import abi  # noqa: E402
from sealnet.runtime import replay_store, replay_table  # noqa: E402
from sealing import DOMAIN_IDS, SealedDatapath  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--format", choices=("text", "json"), default="text")
    ap.add_argument("--per-key", action="store_true", help="also time the per-key read the save used to make")
    args = ap.parse_args()
    rnd = random.Random(1)
    pair = abi.seal_pair(DOMAIN_IDS["b"], DOMAIN_IDS["a"], len(DOMAIN_IDS))
    with tempfile.TemporaryDirectory(prefix="sn-bench-replay-") as tmp:
        dp = SealedDatapath.load(os.path.join(tmp, "state"))
        try:
            table = replay_table.ReplayTable.of_object(dp.obj)
            table.make_new()
            streams = [replay_table.Stream(rnd.randrange(1, 1 << 24), pair, 5, rnd.randrange(2), rnd.randrange(1, 1 << 40))
                       for _ in range(args.streams)]
            placed = table.place(streams, {(g, 0): 7 + g for g in range(0, table.groups, 97)})
            path = os.path.join(tmp, "replay.json")
            result = {"streams": placed, "samples": args.samples, "loadavg": os.getloadavg()[0],
                      "save": timed(lambda: replay_store.save(table, path), args.samples)}
            if args.per_key:
                result["per_key_read"] = timed(lambda: per_key_read(table), args.samples)
        finally:
            dp.close()
    if args.format == "json":
        print(json.dumps(result))
        return 0
    print(f"table of {placed} streams, load average {result['loadavg']:.2f}")
    for what in ("save", "per_key_read"):
        if what in result:
            t = result[what]
            print(f"  {what}: median {t['wall_ms_median']} ms wall (min {t['wall_ms_min']}), {t['cpu_ms_median']} ms CPU")
    return 0


def timed(fn: Callable[[], object], samples: int) -> dict[str, float]:
    wall, cpu = [], []
    for _ in range(samples):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"wall_ms_median": round(statistics.median(wall) * 1e3, 2), "wall_ms_min": round(min(wall) * 1e3, 2),
            "cpu_ms_median": round(statistics.median(cpu) * 1e3, 2)}


def per_key_read(table: replay_table.ReplayTable) -> int:
    """The streams and floors as the save read them before batch lookups."""
    streams = [w for _, value in table.sets.items() for w in replay_table.decode_set(value) if w.stream]
    floors = [value for _, value in table.floors.items() if any(value)]
    return len(streams) + len(floors)


if __name__ == "__main__":
    sys.exit(main())
