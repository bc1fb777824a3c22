"""Generated large policies for benchmarks: N rules over many domains and workflows.

Cross-domain rules implement workflow flows (sealed), as a real federation's
would; same-domain rules open service ports. `change` flips the action of
that many rules (same seed otherwise), for diff benchmarks.
"""

from __future__ import annotations

import random


def generate(rules: int, domains: int = 40, seed: int = 7, change: int = 0) -> str:
    rnd = random.Random(seed)
    lines = [f'policy "bench{rules}" version 1', ""]
    for d in range(domains):
        lines.append(f"domain d{d} {{ tee tdx; nodes 198.{18 + d // 256}.{d % 256}.0/24 }}")
    lines.append("")
    cross = rules // 4
    flows = []
    for w in range(max(1, cross // 50)):
        lines.append(f"workflow w{w} {{")
        for s in range(50):
            a, b = rnd.randrange(domains), rnd.randrange(domains)
            while b == a:
                b = rnd.randrange(domains)
            port = rnd.randrange(1024, 60000)
            lines.append(f"  s{s}a: d{a}")
            lines.append(f"  s{s}b: d{b} port {port}")
            lines.append(f"  s{s}a -> s{s}b tcp")
            flows.append((w, s, a, b))
        lines.append("}")
    lines.append("")
    changed = set(rnd.sample(range(rules), change)) if change else set()
    for i in range(rules):
        if i < len(flows):
            w, s, a, b = flows[i]
            action = "seal"
            body = f"tcp from d{a} to w{w}.s{s}b"
        else:
            a = rnd.randrange(domains)
            proto = rnd.choice(["tcp", "udp", "tcp"])
            lo = rnd.randrange(1, 60000)
            hi = lo + rnd.choice([0, 0, 0, 10, 100])
            port = f"{lo}" if lo == hi else f"{lo}-{hi}"
            action = rnd.choice(["allow", "allow", "deny"])
            src = f"d{a}" if rnd.random() < 0.8 else f"198.{18 + a // 256}.{a % 256}.{rnd.randrange(256)}"
            body = f"{proto} from {src} to d{a} port {port}"
        if i in changed:
            action = "deny" if action != "deny" else "allow"
        lines.append(f"rule r{i}: {action} {body}")
    lines += ["", "default deny", ""]
    return "\n".join(lines)
