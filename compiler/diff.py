"""Semantic diff of two policies (Batfish compareFilters, Zelkova style).

A *difference region* is the set of packets decided by rule X in the old
policy and rule Y in the new one with different actions; each is reported
once, with a witness packet re-checked by the reference semantics. Rules are
compared bucket by bucket (regions.py): buckets whose rules and default are
unchanged are skipped without the solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import z3

from sealnet.compiler.ir import Action, Match, Packet, Policy
from sealnet.compiler.regions import RegionMap, RuleIndex
from sealnet.compiler.semantics import decide
from sealnet.compiler.z3_encoding import Chain, PacketVars, action_of, in_intervals, match_pred

# Distinct regions looked for in one bucket before moving on: a bound on
# solver work for wholesale rewrites, reported when reached.
REGIONS_PER_BUCKET = 256


@dataclass(frozen=True)
class Difference:
    witness: Packet
    old_rule: str
    old_action: Action
    new_rule: str
    new_action: Action
    old_line: int | None
    new_line: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "witness": self.witness.to_json(),
            "old": {"rule": self.old_rule, "action": self.old_action.value, "line": self.old_line},
            "new": {"rule": self.new_rule, "action": self.new_action.value, "line": self.new_line},
        }


@dataclass
class DiffResult:
    differences: list[Difference]
    truncated: bool = False

    @property
    def equivalent(self) -> bool:
        return not self.differences


def _signature(policy: Policy, indices: list[int]) -> tuple:
    return tuple((policy.rules[i].action, policy.rules[i].match) for i in indices)


def diff(old: Policy, new: Policy, universe: Match | None = None) -> DiffResult:
    """Differences over every well-formed packet, or only over `universe` (tests)."""
    regions = RegionMap([old, new])
    old_index = RuleIndex.build(old, regions)
    new_index = RuleIndex.build(new, regions)
    if old.default is not new.default:
        n = len(regions.regions)
        keys = [(s, d) for s in range(n) for d in range(n)]
    else:
        keys = sorted(set(old_index.buckets) | set(new_index.buckets))
    p = PacketVars.fresh()
    solver = z3.Solver()
    solver.add(p.well_formed())
    if universe is not None:
        solver.add(match_pred(p, universe), p.sport == 0)
    found: dict[tuple[str, str], Difference] = {}
    truncated = False
    for key in keys:
        old_rules = old_index.buckets.get(key, [])
        new_rules = new_index.buckets.get(key, [])
        if old.default is new.default and _signature(old, old_rules) == _signature(new, new_rules):
            continue
        src_region, dst_region = regions.regions[key[0]], regions.regions[key[1]]
        a = Chain(p, [old.rules[i] for i in old_rules], old.default)
        b = Chain(p, [new.rules[i] for i in new_rules], new.default)
        solver.push()
        solver.add(in_intervals(p.src, ((src_region.lo, src_region.hi),)),
                   in_intervals(p.dst, ((dst_region.lo, dst_region.hi),)),
                   a.action != b.action)
        for _ in range(REGIONS_PER_BUCKET):
            if solver.check() != z3.sat:
                break
            model = solver.model()
            w = p.packet(model)
            ro = model.eval(a.rule, model_completion=True).as_long()
            rn = model.eval(b.rule, model_completion=True).as_long()
            d_old, d_new = decide(old, w), decide(new, w)
            if d_old.action is d_new.action or d_old.rule_index != (None if ro < 0 else ro) \
                    or d_new.rule_index != (None if rn < 0 else rn) \
                    or d_old.action is not action_of(model, a.action) or d_new.action is not action_of(model, b.action):
                raise AssertionError(f"diff witness {w} does not show a difference")
            pair = (d_old.rule_name, d_new.rule_name)
            found.setdefault(pair, Difference(
                w, d_old.rule_name, d_old.action, d_new.rule_name, d_new.action,
                d_old.rule.span.line if d_old.rule else None, d_new.rule.span.line if d_new.rule else None))
            solver.add(z3.Not(z3.And(a.rule == ro, b.rule == rn)))
        else:
            truncated = True
        solver.pop()
    ordered = sorted(found.values(), key=lambda d: (d.old_line or 1 << 30, d.new_line or 1 << 30))
    return DiffResult(ordered, truncated)
