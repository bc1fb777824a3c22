"""Verify and diff on generated policies: time and peak memory.

Run: .venv/bin/python benchmarks/bench_verify.py [100 1000 10000]
The baseline, measured in the same run, is the front end (parse + check) of
the same policy: verify's figure is also given as a ratio to it.
"""

from __future__ import annotations

import sys
import time
import resource
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sealnet.compiler.diff import diff  # noqa: E402
from sealnet.compiler.frontend import compile_text  # noqa: E402
from sealnet.compiler.verify import verify  # noqa: E402
from gen_policy import generate  # noqa: E402


def measure(fn):
    """Result, seconds, and the process's peak resident set so far (MiB; Z3 allocates in C)."""
    t = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - t
    return result, elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [100, 1000, 10000]
    for n in sizes:
        text = generate(n)
        t = time.perf_counter()
        policy, diags = compile_text(text, "bench.policy")
        front = time.perf_counter() - t
        assert policy is not None, diags[:3]
        report, elapsed, peak = measure(lambda: verify(policy))
        kinds: dict[str, int] = {}
        for f in report.findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        print(f"verify {n:>6} rules: {elapsed:7.2f} s  peak {peak:7.1f} MiB  "
              f"({elapsed / front:.1f}x parse+check at {front:.2f} s)  findings {kinds}")
    n = max(sizes)
    old, _ = compile_text(generate(n), "old.policy")
    new, _ = compile_text(generate(n, change=10), "new.policy")
    result, elapsed, peak = measure(lambda: diff(old, new))
    print(f"diff   {n:>6} rules, 10 changed: {elapsed:7.2f} s  peak {peak:7.1f} MiB  "
          f"regions {len(result.differences)}")


if __name__ == "__main__":
    main()
