"""Hypothesis strategies: well-formed policies (as text) over a small world."""

from __future__ import annotations

from hypothesis import strategies as st

DOMAINS = [("a", "198.18.1.0/24"), ("b", "198.18.2.0/24"), ("c", "198.18.3.0/25")]
TEES = ["none", "sev-snp", "tdx", "sim"]


@st.composite
def port_specs(draw) -> str:
    def item() -> str:
        lo = draw(st.integers(0, 65535))
        if draw(st.booleans()):
            hi = draw(st.integers(lo, min(65535, lo + 2000)))
            return f"{lo}-{hi}"
        return str(lo)

    if draw(st.booleans()):
        return item()
    return "{" + ", ".join(item() for _ in range(draw(st.integers(1, 3)))) + "}"


@st.composite
def endpoints(draw, stages: list[str]) -> str:
    atoms = ["any", "a", "b", "c", "198.18.1.0/25", "198.18.2.7", "198.18.0.0/15", *stages]
    if draw(st.booleans()):
        body = draw(st.sampled_from(atoms))
    else:
        chosen = draw(st.lists(st.sampled_from([a for a in atoms if a != "any"]), min_size=1, max_size=3, unique=True))
        body = "{" + ", ".join(chosen) + "}"
    return "!" * draw(st.integers(0, 2)) + body


@st.composite
def policies(draw) -> str:
    lines = [f'policy "p{draw(st.integers(0, 9))}" version {draw(st.integers(0, 1000))}']
    for name, cidr in DOMAINS:
        lines.append(f"domain {name} {{ tee {draw(st.sampled_from(TEES))}; nodes {cidr} }}")
    stages = []
    if draw(st.booleans()):
        lines.append("workflow w {")
        for stage, domain in (("s1", "a"), ("s2", "b")):
            port = f" port {draw(port_specs())}" if draw(st.booleans()) else ""
            lines.append(f"  {stage}: {domain}{port}")
            stages.append(stage)
        lines.append("  s1 -> s2" + draw(st.sampled_from(["", " tcp", " udp"])))
        lines.append("}")
        stages.append("w.s2")
    n_rules = draw(st.integers(0, 6))
    for i in range(n_rules):
        action = draw(st.sampled_from(["deny", "allow", "allow plaintext", "seal"]))
        proto = draw(st.sampled_from(["", "tcp ", "udp ", "icmp "]))
        port = ""
        if proto != "icmp " and draw(st.booleans()):
            port = f" port {draw(port_specs())}"
        lines.append(f"rule r{i}: {action} {proto}from {draw(endpoints(stages))} to {draw(endpoints(stages))}{port}")
    if draw(st.booleans()):
        lines.append(f"default {draw(st.sampled_from(['deny', 'allow', 'seal']))}")
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(["sealed", "never", "reachable"]))
        lines.append(f"assert {kind} from {draw(endpoints(stages))} to {draw(endpoints(stages))}")
    if draw(st.booleans()):
        lines.insert(draw(st.integers(1, len(lines))), "# a comment")
    sep = draw(st.sampled_from(["\n", "\n\n"]))
    return sep.join(lines) + "\n"
