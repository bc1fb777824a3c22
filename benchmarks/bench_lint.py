"""Lint a generated policy of 10,000 rules (parse + semantic checks, then with the verifier).

Run: .venv/bin/python benchmarks/bench_lint.py [RULES] [policy|mix] [--no-verify]
(`mix`: benchmarks/gen_mix.py's policy instead of gen_policy.py's.)
Prints seconds per phase and the ratio against linting the 47-rule example in the same run.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sealnet.compiler.frontend import compile_text  # noqa: E402
import gen_mix  # noqa: E402
import gen_policy  # noqa: E402


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rules = int(args[0]) if args else 10_000
    generator = gen_mix if args[1:] == ["mix"] else gen_policy
    text = generator.generate(rules)
    baseline_text = (Path(__file__).resolve().parent.parent / "examples" / "federation.policy").read_text()
    base = timed(lambda: compile_text(baseline_text, "federation.policy"), repeat=5)
    front = timed(lambda: compile_text(text, "bench.policy"))
    policy, diagnostics = compile_text(text, "bench.policy")
    assert policy is not None, diagnostics[:3]
    print(f"rules={rules} lines={text.count(chr(10))} generator={generator.__name__}")
    print(f"parse+check: {front:.3f} s  ({front / base:.0f}x the 47-rule example at {base * 1000:.1f} ms)")
    if "--no-verify" in sys.argv:
        return
    try:
        from sealnet.compiler.verify import verify
    except ImportError:
        return
    full = timed(lambda: verify(policy), repeat=1)
    print(f"verify:      {full:.3f} s")


if __name__ == "__main__":
    main()
