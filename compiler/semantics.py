"""The reference semantics: a plain evaluator of a checked policy on one packet.

This is the specification every other implementation is checked against:
the Z3 encoding (witnesses are re-evaluated here), the compiled eBPF object
(translation validation in the kernel) and brute-force enumeration in tests.
It is deliberately the simplest possible code: first matching rule decides,
the default decides the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from sealnet.compiler.ir import Action, Domain, Packet, Policy, Rule


@dataclass(frozen=True)
class Decision:
    action: Action
    rule: Rule | None  # None: the default decided

    @property
    def rule_index(self) -> int | None:
        return None if self.rule is None else self.rule.index

    @property
    def rule_name(self) -> str:
        return "default" if self.rule is None else self.rule.name


def decide(policy: Policy, packet: Packet) -> Decision:
    for rule in policy.rules:
        if rule.match.matches(packet):
            return Decision(rule.action, rule)
    return Decision(policy.default, None)


def domain_pair(policy: Policy, packet: Packet) -> tuple[Domain | None, Domain | None]:
    """The (source, destination) domains whose pair key seals this packet."""
    return policy.domain_of(packet.src), policy.domain_of(packet.dst)
