"""ICMP errors about sealed flows (docs/language.md, "ICMP errors").

An ICMP error quotes the packet it is about, and the receiver's kernel quotes
it after the data plane opened it: the quote is plaintext. So the data plane
decides an error by its own decision *and* its quote's: sealed when its own
decision is `seal`; dropped when the quoted packet's decision is `seal`
(counted as `icmp_quote_drop`); otherwise its own decision. This module is
that rule in the reference semantics (`decide_icmp_error`), and the
verifier's account of what it costs: each `seal` rule whose flows' senders
never hear an ICMP error back although the policy allows the reverse ICMP
(in clear, so the data plane must drop it: `silenced_seal_rules`), with a
witness pair of packets. Where the policy denies the reverse ICMP anyway,
nothing changes and nothing is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import z3

from sealnet.compiler.cubes import match_intersect
from sealnet.compiler.firstmatch import meet, partition, point, subtract
from sealnet.compiler.ir import PROTO_ICMP, Action, Cube, Match, Packet, Policy, Rule
from sealnet.compiler.semantics import Decision, decide
from sealnet.compiler.solving import Session, Undecided
from sealnet.compiler.z3_encoding import ACTION_CODES, Chain, PacketVars, match_pred

# The ICMP types that quote the packet they are about (RFC 792): destination
# unreachable, source quench, redirect, time exceeded, parameter problem.
ERROR_TYPES = (3, 4, 5, 11, 12)

@dataclass(frozen=True)
class IcmpErrorDecision:
    action: Action
    own: Decision  # the error's own decision, as for any packet
    dropped_for_quote: bool  # the quote belongs to a sealed flow: dropped, never passed in clear

Decide = Callable[[Packet], Decision]


def decide_icmp_error(policy: Policy, error: Packet, quoted: Packet, decide_fn: Decide | None = None
                      ) -> IcmpErrorDecision:
    """What the data plane does with ICMP error `error` that quotes `quoted`.
    (`decide_fn`: the reference decision, faster for a large policy; semantics.decide by default.)"""
    decide_of = decide_fn or (lambda packet: decide(policy, packet))
    own = decide_of(error)
    if own.action is Action.SEAL:
        return IcmpErrorDecision(Action.SEAL, own, False)
    if decide_of(quoted).action is Action.SEAL:
        return IcmpErrorDecision(Action.DENY, own, True)
    return IcmpErrorDecision(own.action, own, False)

def error_about(quoted: Packet) -> Packet:
    """The ICMP error a receiver sends back about `quoted` (ICMP carries no ports)."""
    return Packet(quoted.dst, quoted.src, PROTO_ICMP)

@dataclass(frozen=True)
class SilencedRule:
    """A seal rule whose senders get no ICMP error back: the policy allows them in clear, so they are dropped."""

    rule: Rule
    quoted: Packet  # a packet the rule seals
    error: Packet  # the error about it, which the data plane drops
    passed_by: Decision  # the error's own decision: the allow that would have passed it in clear

@dataclass(frozen=True)
class UndecidedRule:
    rule: Rule
    reason: str

_ICMP_ONLY = Match((Cube(proto=((PROTO_ICMP, PROTO_ICMP),)),))

EarlierOf = Callable[[Rule, Match], Sequence[Rule]]


def silenced_seal_rules(policy: Policy, session: Session, universe: Match | None = None, *,
                        decide_fn: Decide | None = None, earlier_of: EarlierOf | None = None,
                        ) -> tuple[list[SilencedRule], list[UndecidedRule]]:
    """Per `seal` rule, a packet it seals whose ICMP errors the policy would pass
    in clear and the data plane therefore drops, re-checked by the reference semantics;
    rules the solver could not decide are listed apart (never reported clean).
    `universe` restricts both packets (the tests' brute-force cross-check; its
    source ports are 0). `decide_fn` and `earlier_of` (the rules before a rule
    that meet a region) let the verifier lend its indexes to a large policy."""
    decide_of = decide_fn or (lambda packet: decide(policy, packet))
    earlier = earlier_of or (lambda rule, region: [r for r in policy.rules[:rule.index] if meet(region, r.match)])
    seal_rules = [r for r in policy.rules if r.action is Action.SEAL]
    icmp_rules: Sequence[Rule] = [r for r in policy.rules if meet(r.match, _ICMP_ONLY)]
    icmp_can_pass = policy.default is Action.ALLOW or any(r.action is Action.ALLOW for r in icmp_rules)
    if not seal_rules or not icmp_can_pass:
        return [], []
    icmp_region = _ICMP_ONLY if universe is None else match_intersect(_ICMP_ONLY, universe)
    pieces = partition(icmp_region, icmp_rules, session.budget.cubes)
    # The address pairs whose ICMP errors would pass in clear, seen from the
    # quoted packet's side (its destination sends the error to its source).
    reply_sides = None if pieces is None else Match(tuple(
        Cube(src=c.dst, dst=c.src) for rule, piece in pieces
        if (rule.action if rule else policy.default) is Action.ALLOW for c in piece.cubes))
    solver = _Fallback(policy, icmp_rules, session, universe, earlier)
    silenced: list[SilencedRule] = []
    undecided: list[UndecidedRule] = []
    for rule in seal_rules:
        try:
            q = _sealed_with_clear_errors(rule, reply_sides, session.budget.cubes, universe, earlier, solver)
        except Undecided as exc:
            undecided.append(UndecidedRule(rule, exc.reason))
            continue
        if q is None:
            continue
        if universe is not None:
            q = Packet(q.src, q.dst, q.proto, 0, q.dport)
        e = error_about(q)
        verdict = decide_icmp_error(policy, e, q, decide_of)
        if decide_of(q).rule is not rule or not verdict.dropped_for_quote or verdict.own.action is not Action.ALLOW:
            raise AssertionError(f"icmp_errors: witness {q} / {e} disagrees with the reference semantics")
        silenced.append(SilencedRule(rule, q, e, verdict.own))
    return silenced, undecided


def _sealed_with_clear_errors(rule: Rule, reply_sides: Match | None, budget: int, universe: Match | None,
                              earlier_of: EarlierOf, solver: "_Fallback") -> Packet | None:
    """A packet `rule` decides whose ICMP error would pass in clear, or None."""
    region = rule.match if universe is None else match_intersect(rule.match, universe)
    if reply_sides is not None:
        if not meet(region, reply_sides):
            return None
        region = match_intersect(region, reply_sides)
        rest = subtract(region, [r.match for r in earlier_of(rule, region)], budget)
        if rest is not None:
            return point(rest) if rest.cubes else None
    return solver.packet(rule, region)


class _Fallback:
    """Z3 for what the cube arithmetic could not finish within its budget."""

    def __init__(self, policy: Policy, icmp_rules: Sequence[Rule], session: Session, universe: Match | None,
                 earlier_of: EarlierOf):
        self.policy, self.icmp_rules, self.session, self.universe = policy, icmp_rules, session, universe
        self.earlier_of = earlier_of
        self.quoted: PacketVars | None = None

    def _prepare(self) -> PacketVars:
        if self.quoted is None:
            self.quoted, error = PacketVars.fresh("q_"), PacketVars.fresh("e_")
            self.error_allows = z3.And(
                error.src == self.quoted.dst, error.dst == self.quoted.src, error.proto == PROTO_ICMP,
                error.sport == 0, error.dport == 0, self.quoted.well_formed(),
                Chain(error, self.icmp_rules, self.policy.default).action == ACTION_CODES[Action.ALLOW],
                *([] if self.universe is None else [match_pred(error, self.universe)]))
        return self.quoted

    def packet(self, rule: Rule, region: Match) -> Packet | None:
        q = self._prepare()
        model = self.session.model(self.error_allows, match_pred(q, region),
                                   *[z3.Not(match_pred(q, r.match)) for r in self.earlier_of(rule, region)])
        return None if model is None else q.packet(model)
