"""A realistic mix of rules for benchmarks, closer to a real federation's policy
than gen_policy.py: 20 domains with /22 node ranges, rules on sub-domain CIDRs
(/26, /28, single hosts), negated endpoints, port ranges and port sets, about
3 % broad rules (a domain to `any`, `!x` to a domain), about 15 % copies of an
earlier rule (same match, sometimes another action), a few workflows and
assertions. `change` flips the action of that many rules (same seed
otherwise), for diff benchmarks.
"""

from __future__ import annotations

import random

DOMAINS = 20


def _net(d: int) -> tuple[int, int]:
    """Second and third octet base of domain d's /22 inside 198.18.0.0/15."""
    base = d * 4
    return 18 + base // 256, base % 256


def _sub(rnd: random.Random, d: int) -> str:
    b, c = _net(d)
    kind = rnd.random()
    third = c + rnd.randrange(4)
    if kind < 0.4:
        return f"198.{b}.{third}.{rnd.randrange(4) * 64}/26"
    if kind < 0.7:
        return f"198.{b}.{third}.{rnd.randrange(16) * 16}/28"
    return f"198.{b}.{third}.{rnd.randrange(1, 255)}"


def _endpoint(rnd: random.Random, d: int) -> str:
    x = rnd.random()
    if x < 0.5:
        return f"d{d}"
    if x < 0.9:
        return _sub(rnd, d)
    return f"!d{d}"


def _ports(rnd: random.Random) -> str:
    x = rnd.random()
    if x < 0.5:
        return f" port {rnd.choice([22, 53, 80, 443, 5432, 6379, 8080, 9000, rnd.randrange(1024, 60000)])}"
    if x < 0.75:
        lo = rnd.randrange(1024, 60000)
        return f" port {lo}-{lo + rnd.choice([9, 99, 999])}"
    if x < 0.95:
        ports = sorted(rnd.sample([22, 80, 443, 8080, 8443, 9090, 3000, 5000, 6000, 7000], rnd.randrange(2, 5)))
        return " port {" + ", ".join(map(str, ports)) + "}"
    return ""


def generate(rules: int, domains: int = DOMAINS, seed: int = 11, change: int = 0) -> str:
    rnd = random.Random(seed)
    lines = [f'policy "mix{rules}" version 1', ""]
    for d in range(domains):
        b, c = _net(d)
        lines.append(f"domain d{d} {{ tee {rnd.choice(['tdx', 'sev-snp'])}; nodes 198.{b}.{c}.0/22 }}")
    lines.append("")
    flows = []
    for w in range(max(1, rules // 500)):
        lines.append(f"workflow w{w} {{")
        for s in range(10):
            a, b = rnd.sample(range(domains), 2)
            lines += [f"  s{s}a: d{a}", f"  s{s}b: d{b} port {rnd.randrange(1024, 60000)}", f"  s{s}a -> s{s}b tcp"]
            flows.append((w, s, a, b))
        lines.append("}")
    lines.append("")
    changed = set(rnd.sample(range(rules), change)) if change else set()
    bodies: list[tuple[str, str]] = []
    for i in range(rules):
        x = rnd.random()
        if i < len(flows):
            w, s, a, b = flows[i]
            action, body = "seal", f"tcp from d{a} to w{w}.s{s}b"
        elif x < 0.15 and bodies:
            action, body = rnd.choice(bodies)
            if rnd.random() < 0.3:
                action = rnd.choice(["allow", "deny", "seal"])
        elif x < 0.18:
            # broad in addresses; whole-domain catch-alls only near the end, as people write them
            d = rnd.randrange(domains)
            action = rnd.choice(["deny", "deny", "seal"])
            bodies_broad = [f"tcp from !d{d} to d{d}{_ports(rnd) or ' port 22'}",
                            f"tcp from any to d{d}{_ports(rnd) or ' port 443'}", f"udp from d{d} to any port 53"]
            if i > rules * 0.9:
                bodies_broad += [f"from d{d} to any", f"from !d{d} to d{d}"]
            body = rnd.choice(bodies_broad)
        else:
            a = rnd.randrange(domains)
            b = a if rnd.random() < 0.6 else rnd.randrange(domains)
            proto = rnd.choice(["tcp ", "tcp ", "udp ", ""])
            action = rnd.choice(["allow", "allow", "deny", "seal"]) if a == b else rnd.choice(["seal", "deny"])
            body = f"{proto}from {_endpoint(rnd, a)} to {_endpoint(rnd, b)}{_ports(rnd) or ' port 8080'}"
        bodies.append((action, body))
        if i in changed:
            action = "deny" if action != "deny" else "seal"
        lines.append(f"rule r{i}: {action} {body}")
    lines += ["", "default deny", ""]
    for _ in range(10):
        a, b = rnd.sample(range(domains), 2)
        lines.append(f"assert {rnd.choice(['sealed', 'never', 'reachable'])} tcp from d{a} to d{b}")
    return "\n".join(lines) + "\n"
