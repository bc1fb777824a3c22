"""verify, lint and diff on generated policies: wall time and peak memory of the real command.

Run: .venv/bin/python benchmarks/bench_verify.py [SIZES...]   (default 1000 10000 30000)
Both generators: gen_policy.py (the project's) and gen_mix.py (a realistic mix:
sub-domain CIDRs, negations, ranges, port sets, broad rules, copies). Each
figure is one `policyc` process (peak RSS of that process alone); the
baseline, measured in the same run, is `lint --no-verify` of the same file
(parse + check), and verify's figure is also given as a ratio to it. diff
compares each size's policy with a copy with 10 actions changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gen_mix  # noqa: E402
import gen_policy  # noqa: E402

POLICYC = [sys.executable, "-m", "sealnet.compiler.cli"]


def run(*args: str) -> tuple[float, float, int]:
    """Seconds, peak RSS (MiB) and exit code of one policyc process."""
    start = time.perf_counter()
    proc = subprocess.Popen([*POLICYC, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 10000, 30000]
    with tempfile.TemporaryDirectory() as tmp:
        for name, gen in (("project", gen_policy.generate), ("mix", gen_mix.generate)):
            for n in sizes:
                path = Path(tmp) / f"{name}{n}.policy"
                path.write_text(gen(n))
                front, _, _ = run("lint", "--no-verify", str(path))
                v, v_rss, v_rc = run("verify", str(path))
                lint, l_rss, _ = run("lint", str(path))
                print(f"{name:7} {n:>6} rules: verify {v:6.2f} s {v_rss:6.0f} MiB (exit {v_rc}, "
                      f"{v / front:.1f}x parse+check at {front:.2f} s) | lint {lint:6.2f} s {l_rss:6.0f} MiB",
                      flush=True)
            n = 10000 if 10000 in sizes else max(sizes)
            old, new = Path(tmp) / "old.policy", Path(tmp) / "new.policy"
            old.write_text(gen(n))
            new.write_text(gen(n, change=10))
            d, d_rss, _ = run("diff", str(old), str(new))
            print(f"{name:7} diff {n} rules, 10 changed: {d:6.2f} s {d_rss:6.0f} MiB", flush=True)


if __name__ == "__main__":
    main()
