"""Helpers shared by tests: compiling policy text and comparing IR without spans."""

from __future__ import annotations

from sealnet.compiler.frontend import compile_text
from sealnet.compiler.ir import Policy

HEADER = 'policy "t" version 1\n'
DOMAINS = (
    "domain a { tee sev-snp; nodes 198.18.1.0/24 }\n"
    "domain b { tee tdx; nodes 198.18.2.0/24 }\n"
    "domain c { tee none; nodes 198.18.3.0/24 }\n"
)


def compile_ok(text: str, file: str = "t.policy") -> Policy:
    policy, diagnostics = compile_text(text, file)
    assert policy is not None, [f"{d.span}: {d.code} {d.message}" for d in diagnostics]
    return policy


def codes(text: str) -> list[str]:
    _, diagnostics = compile_text(text, "t.policy")
    return [d.code for d in diagnostics]


def semantic_key(policy: Policy) -> tuple:
    """Everything that decides packets or is checked, without source positions."""
    return (
        policy.name, policy.version, policy.default,
        tuple((d.id, d.name, d.tee, d.prefixes, d.measurements, d.control_plane) for d in policy.domains),
        tuple((w.name, tuple((s.name, s.domain, s.ports) for s in w.stages),
               tuple((f.src, f.dst, f.proto, f.match) for f in w.flows)) for w in policy.workflows),
        tuple((r.index, r.name, r.action, r.match, r.plaintext_ok) for r in policy.rules),
        tuple((a.kind, a.match) for a in policy.assertions),
    )
