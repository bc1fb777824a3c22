"""Semantic diff of two policies as a plan (Batfish compareFilters, Zelkova style).

The result is the set of packets whose decision changes, as *regions*: boxes
of (source, destination, protocol, destination port) ranges in which every
packet goes from one old rule's action to one new rule's action, each with a
witness packet re-checked by the reference semantics. Regions are grouped by
domain pair and by (old action -> new action) for the plan a reviewer reads.

How: only packets that some removed or added rule matches can change (the
rules both lists share keep their order, so a packet no changed rule matches
is decided by the same shared rule, or the same default, in both); when the
defaults differ, every packet can. That region is cut bucket by bucket
(regions.py) by the old rules, then by the new, with exact cube arithmetic
(firstmatch.py); where the cubes fragment past their budget Z3 enumerates
the bucket's (old rule, new rule) pairs instead, each a one-packet region
marked inexact. A bucket the solver cannot decide is reported unknown.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

import z3

from sealnet.compiler.cubes import EVERYTHING, match_intersect
from sealnet.compiler.firstmatch import cubes_meet, is_void, meet, partition, point, subtract
from sealnet.compiler.ir import (PORTED_PROTOCOLS, PROTO_NAMES, Action, Cube, IntervalSet, Match, Packet, Policy, Rule,
                                 contains, interval_prefixes)
from sealnet.compiler.regions import RegionMap, RuleIndex
from sealnet.compiler.semantics import decide
from sealnet.compiler.solving import Budget, Session, Undecided
from sealnet.compiler.z3_encoding import Chain, PacketVars, in_intervals, match_pred

# Distinct (old rule, new rule) pairs the solver fallback looks for in one
# bucket before moving on: a bound on solver work, reported when reached.
REGIONS_PER_BUCKET = 256


def _ranges(intervals: IntervalSet, kind: str) -> list[str]:
    if kind == "addr":
        return [str(n) for n in interval_prefixes(intervals)]
    if kind == "proto":
        return [PROTO_NAMES.get(lo, str(lo)) if lo == hi else f"{lo}-{hi}" for lo, hi in intervals]
    return [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in intervals]


def packets_in(cube: Cube) -> int:
    """Well-formed packets of a cube, source ports aside: protocols without ports count once (port 0)."""
    def size(intervals: IntervalSet) -> int:
        return sum(hi - lo + 1 for lo, hi in intervals)

    protos = size(cube.proto)
    ported = sum(1 for p in PORTED_PROTOCOLS if contains(cube.proto, p))
    per_pair = ported * size(cube.dport) + (protos - ported) * (1 if contains(cube.dport, 0) else 0)
    return size(cube.src) * size(cube.dst) * per_pair


@dataclass(frozen=True)
class ChangedRegion:
    """Packets (a box of ranges) that `old_rule` decided `old_action` and `new_rule` now decides `new_action`.

    exact: the box is exactly such packets (cube arithmetic); False when the
    solver fallback found only the witness (the box is then that one packet).
    """

    cube: Cube
    packets: int
    witness: Packet
    old_rule: str
    old_action: Action
    old_line: int | None
    new_rule: str
    new_action: Action
    new_line: int | None
    src_domain: str | None
    dst_domain: str | None
    exact: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"src": _ranges(self.cube.src, "addr"), "dst": _ranges(self.cube.dst, "addr"),
                "proto": _ranges(self.cube.proto, "proto"), "dport": _ranges(self.cube.dport, "port"),
                "packets": self.packets, "exact": self.exact, "witness": self.witness.to_json(),
                "old": {"rule": self.old_rule, "action": self.old_action.value, "line": self.old_line},
                "new": {"rule": self.new_rule, "action": self.new_action.value, "line": self.new_line}}


@dataclass(frozen=True)
class Difference:
    """One (old rule, new rule) pair whose decisions differ, with one witness (the short form)."""

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


@dataclass(frozen=True)
class Group:
    """The changed regions of one domain pair and one (old action -> new action)."""

    src_domain: str | None
    dst_domain: str | None
    old_action: Action
    new_action: Action
    regions: tuple[ChangedRegion, ...]

    @property
    def packets(self) -> int:
        return sum(r.packets for r in self.regions)

    def to_json(self) -> dict[str, Any]:
        return {"src_domain": self.src_domain, "dst_domain": self.dst_domain,
                "old_action": self.old_action.value, "new_action": self.new_action.value,
                "count": len(self.regions), "packets": self.packets,
                "regions": [r.to_json() for r in self.regions]}


@dataclass
class DiffResult:
    """What `diff` answers. regions: every changed box; unknown: buckets the
    solver could not decide (reason each); truncated: the solver fallback hit
    its per-bucket bound, so some (old, new) pairs may be missing."""

    regions: list[ChangedRegion] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    truncated: bool = False

    @property
    def equivalent(self) -> bool:
        return not self.regions

    @property
    def status(self) -> str:
        """different / unknown / equivalent: a difference found is definite even when some bucket is unknown."""
        if self.regions:
            return "different"
        return "unknown" if self.unknown or self.truncated else "equivalent"

    @property
    def differences(self) -> list[Difference]:
        """One per (old rule, new rule) pair, the first region's witness."""
        found: dict[tuple[str, str], Difference] = {}
        for r in self.regions:
            found.setdefault((r.old_rule, r.new_rule), Difference(
                r.witness, r.old_rule, r.old_action, r.new_rule, r.new_action, r.old_line, r.new_line))
        return sorted(found.values(), key=lambda d: (d.old_line or 1 << 30, d.new_line or 1 << 30))

    def groups(self) -> list[Group]:
        by: dict[tuple, list[ChangedRegion]] = {}
        for r in self.regions:
            by.setdefault((r.src_domain or "", r.dst_domain or "", r.old_action.value, r.new_action.value), []).append(r)
        return [Group(rs[0].src_domain, rs[0].dst_domain, rs[0].old_action, rs[0].new_action, tuple(rs))
                for _, rs in sorted(by.items())]


def _signature(rule: Rule) -> tuple:
    return (rule.action, rule.match)


def changed_rules(old: Policy, new: Policy) -> tuple[list[Rule], list[Rule]]:
    """Rules only in the old list and only in the new one, after matching the longest common order."""
    a = [_signature(r) for r in old.rules]
    b = [_signature(r) for r in new.rules]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    kept_old: set[int] = set()
    kept_new: set[int] = set()
    for block in matcher.get_matching_blocks():
        kept_old.update(range(block.a, block.a + block.size))
        kept_new.update(range(block.b, block.b + block.size))
    return ([r for r in old.rules if r.index not in kept_old], [r for r in new.rules if r.index not in kept_new])


class Differ:
    def __init__(self, old: Policy, new: Policy, universe: Match | None, budget: Budget | None):
        self.old, self.new, self.universe = old, new, universe
        self.regions = RegionMap([old, new])
        self.old_index = RuleIndex.build(old, self.regions)
        self.new_index = RuleIndex.build(new, self.regions)
        self.budget = budget or Budget()
        self.session: Session | None = None
        self.result = DiffResult()

    def touched(self) -> Match:
        if self.old.default is not self.new.default:
            return EVERYTHING
        removed, added = changed_rules(self.old, self.new)
        cubes: list[Cube] = []  # disjoint, so that no packet is counted twice
        for rule in removed + added:
            for c in rule.match.cubes:
                rest = subtract(Match((c,)), (Match((d,)) for d in cubes if cubes_meet(c, d)), self.budget.cubes)
                cubes.extend(rest.cubes if rest is not None else (c,))
        return Match(tuple(cubes))

    def run(self) -> DiffResult:
        touched = self.touched()
        if self.universe is not None:
            touched = match_intersect(touched, self.universe)
        if not touched.cubes:
            return self.result
        for key in self.old_index.keys_of(touched):
            src, dst = self.regions.regions[key[0]], self.regions.regions[key[1]]
            box = Match((Cube(src=((src.lo, src.hi),), dst=((dst.lo, dst.hi),)),))
            region = match_intersect(touched, box)
            if is_void(region):
                continue
            old_rules = [self.old.rules[i] for i in self.old_index.buckets.get(key, ())
                         if meet(self.old.rules[i].match, region)]
            new_rules = [self.new.rules[i] for i in self.new_index.buckets.get(key, ())
                         if meet(self.new.rules[i].match, region)]
            if not self._exact(region, old_rules, new_rules, src.domain, dst.domain):
                try:
                    self._solver(key, old_rules, new_rules, src.domain, dst.domain)
                except Undecided as exc:
                    self.result.unknown.append(f"{src.domain or 'no domain'} -> {dst.domain or 'no domain'} "
                                               f"({_ranges(((src.lo, src.hi),), 'addr')[0]} -> "
                                               f"{_ranges(((dst.lo, dst.hi),), 'addr')[0]}): {exc.reason}")
        self.result.regions.sort(key=lambda r: (r.src_domain or "~", r.dst_domain or "~", r.old_action.value,
                                                r.new_action.value, r.old_line or 1 << 30, r.new_line or 1 << 30,
                                                r.cube.src, r.cube.dst, r.cube.proto, r.cube.dport))
        return self.result

    def _exact(self, region: Match, old_rules: list[Rule], new_rules: list[Rule],
               src_domain: str | None, dst_domain: str | None) -> bool:
        cubes = self.budget.cubes
        old_pieces = partition(region, old_rules, cubes)
        if old_pieces is None:
            return False
        found: list[ChangedRegion] = []
        for o, piece in old_pieces:
            old_action = o.action if o else self.old.default
            rel = [r for r in new_rules if meet(r.match, piece)]
            new_pieces = partition(piece, rel, cubes)
            if new_pieces is None:
                return False
            for n, changed in new_pieces:
                new_action = n.action if n else self.new.default
                if new_action is old_action:
                    continue
                for cube in changed.cubes:
                    w = point(Match((cube,)))
                    if w is None:
                        continue
                    found.append(self._region(cube, w, o, n, src_domain, dst_domain, exact=True))
        self.result.regions.extend(found)
        return True

    def _region(self, cube: Cube, w: Packet, o: Rule | None, n: Rule | None,
                src_domain: str | None, dst_domain: str | None, exact: bool) -> ChangedRegion:
        d_old, d_new = decide(self.old, w), decide(self.new, w)
        if d_old.action is d_new.action or d_old.rule is not o or d_new.rule is not n:
            raise AssertionError(f"diff witness {w} does not show the change it reports")
        return ChangedRegion(cube, packets_in(cube) if exact else 1, w,
                             d_old.rule_name, d_old.action, o.span.line if o else None,
                             d_new.rule_name, d_new.action, n.span.line if n else None,
                             src_domain, dst_domain, exact)

    def _solver(self, key: tuple[int, int], old_rules: list[Rule], new_rules: list[Rule],
                src_domain: str | None, dst_domain: str | None) -> None:
        if self.session is None:
            self.p = PacketVars.fresh()
            self.session = Session(self.budget)
            self.session.add(self.p.well_formed())
            if self.universe is not None:
                self.session.add(match_pred(self.p, self.universe), self.p.sport == 0)
        p, session = self.p, self.session
        src, dst = self.regions.regions[key[0]], self.regions.regions[key[1]]
        a = Chain(p, old_rules, self.old.default)
        b = Chain(p, new_rules, self.new.default)
        session.push()
        try:
            session.add(in_intervals(p.src, ((src.lo, src.hi),)), in_intervals(p.dst, ((dst.lo, dst.hi),)),
                        a.action != b.action)
            for _ in range(REGIONS_PER_BUCKET):
                if session.check() != z3.sat:
                    return
                model = session.solver.model()
                w = p.packet(model)
                ro = model.eval(a.rule, model_completion=True).as_long()
                rn = model.eval(b.rule, model_completion=True).as_long()
                o = self.old.rules[ro] if ro >= 0 else None
                n = self.new.rules[rn] if rn >= 0 else None
                cube = Cube(((w.src, w.src),), ((w.dst, w.dst),), ((w.proto, w.proto),), ((w.dport, w.dport),))
                self.result.regions.append(self._region(cube, w, o, n, src_domain, dst_domain, exact=False))
                session.add(z3.Not(z3.And(a.rule == ro, b.rule == rn)))
            self.result.truncated = True
        finally:
            session.pop()


def diff(old: Policy, new: Policy, universe: Match | None = None, budget: Budget | None = None) -> DiffResult:
    """The packets whose decision differs, over every well-formed packet or only `universe` (tests)."""
    return Differ(old, new, universe, budget).run()
