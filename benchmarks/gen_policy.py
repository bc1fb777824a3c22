"""Generated large policies for benchmarks: N rules over many domains and ports."""

from __future__ import annotations

import random


def generate(rules: int, domains: int = 40, seed: int = 7, change: int = 0) -> str:
    """A realistic-looking policy: per-domain-pair service rules, some sealed.

    `change` rewrites that many rules (same seed otherwise), for diff benchmarks.
    """
    rnd = random.Random(seed)
    lines = [f'policy "bench{rules}" version 1', ""]
    for d in range(domains):
        # 198.18.0.0/15 holds 512 /24s: domain d owns 198.18/19.(d*4)/22 ... keep /24 per domain
        third = d % 256
        second = 18 + d // 256
        lines.append(f"domain d{d} {{ tee tdx; nodes 198.{second}.{third}.0/24 }}")
    lines.append("")
    changed = set(rnd.sample(range(rules), change)) if change else set()
    for i in range(rules):
        a, b = rnd.randrange(domains), rnd.randrange(domains)
        proto = rnd.choice(["tcp", "udp", "tcp", ""])
        lo = rnd.randrange(1, 60000)
        hi = lo + rnd.choice([0, 0, 0, 10, 100])
        port = f" port {lo}" if lo == hi else f" port {lo}-{hi}"
        action = "seal" if a != b else rnd.choice(["allow", "deny"])
        if i in changed:
            action = "deny" if action != "deny" else "allow"
        host = rnd.randrange(0, 256)
        src = f"d{a}" if rnd.random() < 0.8 else f"198.{18 + a // 256}.{a % 256}.{host}"
        lines.append(f"rule r{i}: {action} {proto + ' ' if proto else ''}from {src} to d{b}{port}")
    lines += ["", "default deny", ""]
    return "\n".join(lines)
