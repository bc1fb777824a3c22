"""verify, lint and diff on generated policies: wall time and peak memory of the real command.

Run: .venv/bin/python benchmarks/bench_verify.py [--diff-only] [SIZES...]   (default 1000 10000 30000)
Both generators: gen_policy.py (the project's) and gen_mix.py (a realistic mix:
sub-domain CIDRs, negations, ranges, port sets, broad rules, copies). Each
figure is one `policyc` process (peak RSS of that process alone); the
baseline, measured in the same run, is `lint --no-verify` of the same file
(parse + check), and verify's figure is also given as a ratio to it. diff
compares each size's policy (10,000 rules when that size is run) with three
changes of it: 10 actions flipped; the `default` flipped (every packet no rule
matches changes); and an edit mix (rules removed, inserted, moved and flipped,
edited() below), the shapes of a real review.
"""

from __future__ import annotations

import os
import random
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


def run_cpu(*args: str) -> tuple[float, float, float, int]:
    """Seconds of wall time and of CPU (user + system, with the children it forks), peak RSS (MiB), exit code:
    on a shared machine the CPU time is the steadier figure."""
    start = time.perf_counter()
    proc = subprocess.Popen([*POLICYC, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    return (time.perf_counter() - start, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
            os.waitstatus_to_exitcode(status))


def flip_default(text: str) -> str:
    """The same policy with the other default (deny <-> allow)."""
    lines = text.split("\n")
    i = next(k for k, line in enumerate(lines) if line.startswith("default "))
    lines[i] = "default allow" if lines[i] == "default deny" else "default deny"
    return "\n".join(lines)


def edited(text: str, ops: int = 40, seed: int = 3) -> str:
    """A review's worth of edits: `ops` each of rules removed, inserted (another rule's
    body, another action, a new name), moved elsewhere, and action flips."""
    rnd = random.Random(seed)
    lines = text.split("\n")
    first = next(k for k, line in enumerate(lines) if line.startswith("rule "))
    last = max(k for k, line in enumerate(lines) if line.startswith("rule "))
    rules = lines[first:last + 1]
    bodies = [line.split(": ", 1)[1].split(" ", 1) for line in rules]  # (action, match)
    for _ in range(ops):
        del rules[rnd.randrange(len(rules))]
    for i in range(ops):
        action, body = rnd.choice(bodies)
        other = rnd.choice([a for a in ("allow", "deny", "seal") if a != action])
        rules.insert(rnd.randrange(len(rules) + 1), f"rule x{i}: {other} {body}")
    for _ in range(ops):
        rules.insert(rnd.randrange(len(rules) + 1), rules.pop(rnd.randrange(len(rules))))
    for _ in range(ops):
        k = rnd.randrange(len(rules))
        name, rest = rules[k].split(": ", 1)
        action, body = rest.split(" ", 1)
        rules[k] = f"{name}: {'deny' if action != 'deny' else 'allow'} {body}"
    return "\n".join(lines[:first] + rules + lines[last + 1:])


def main() -> None:
    diff_only = "--diff-only" in sys.argv[1:]  # only the diff figures (verify's take minutes)
    sizes = [int(a) for a in sys.argv[1:] if a != "--diff-only"] or [1000, 10000, 30000]
    with tempfile.TemporaryDirectory() as tmp:
        for name, gen in (("project", gen_policy.generate), ("mix", gen_mix.generate)):
            for n in [] if diff_only else sizes:
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
            text = gen(n)
            old.write_text(text)
            front, _, _ = run("lint", "--no-verify", str(old))
            for case, changed in (("10 actions flipped", gen(n, change=10)), ("default flipped", flip_default(text)),
                                  ("edit mix", edited(text))):
                new.write_text(changed)
                d, cpu, d_rss, d_rc = run_cpu("diff", str(old), str(new))
                print(f"{name:7} diff {n} rules, {case + ':':19} {d:6.2f} s (cpu {cpu:6.2f} s) {d_rss:6.0f} MiB "
                      f"(exit {d_rc}; parse+check of one file {front:.2f} s; load {os.getloadavg()[0]:.1f})",
                      flush=True)


if __name__ == "__main__":
    main()
