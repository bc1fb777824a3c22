"""Semantic diff of two policies as a plan (Batfish compareFilters, Zelkova style).

The result is the set of packets whose decision changes, as *regions*: boxes
of (source, destination, protocol, destination port) ranges in which every
packet goes from one old rule's action to one new rule's action, each with a
witness packet decided again by another path. Regions are grouped by domain
pair and by (old action -> new action) for the plan a reviewer reads.

How: the two rule lists are aligned (the rules both share, in the same
order) into one merged list; a packet whose first matching rule there is a
shared one is decided alike, so only packets some removed or added rule
matches can change, and, when the defaults differ, those no rule matches.
Bucket by bucket (regions.py) those packets are labelled with their old and
new deciding rule by a sweep over the rules' field boundaries (sweep.py:
exact interval arithmetic, near-linear); where the sweep would need more
slabs than its budget, Z3 enumerates the bucket's (old rule, new rule)
pairs instead, each a one-packet region marked inexact. A bucket the solver
cannot decide is reported unknown, never unchanged.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import z3

from sealnet.compiler.cubes import EVERYTHING, match_intersect
from sealnet.compiler.firstmatch import meet, point
from sealnet.compiler.ir import (FULL_PORT, PORTED_PROTOCOLS, PROTO_MAX, PROTO_NAMES, Action, Cube, IntervalSet, Match,
                                 Packet, Policy, Rule, complement, contains, intersect, interval_prefixes, normalize)
from sealnet.compiler.regions import RegionMap, RuleIndex
from sealnet.compiler.solving import Budget, Session, Undecided
from sealnet.compiler.sweep import Entry, Label, OverBudget, Sweep
from sealnet.compiler.z3_encoding import Chain, PacketVars, in_intervals, match_pred

# Distinct (old rule, new rule) pairs the solver fallback looks for in one
# bucket before moving on: a bound on solver work, reported when reached.
REGIONS_PER_BUCKET = 256


def _ranges(intervals: IntervalSet, kind: str) -> list[str]:
    return list(_ranges_of(intervals, kind))


@functools.lru_cache(maxsize=4096)  # a plan repeats a few address sets (a domain, the gaps) in many regions
def _ranges_of(intervals: IntervalSet, kind: str) -> tuple[str, ...]:
    if kind == "addr":
        return tuple(str(n) for n in interval_prefixes(intervals))
    if kind == "proto":
        return tuple(PROTO_NAMES.get(lo, str(lo)) if lo == hi else f"{lo}-{hi}" for lo, hi in intervals)
    return tuple(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in intervals)


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


def _matching_blocks(old: Policy, new: Policy) -> list[tuple[int, int, int]]:
    """(old start, new start, length) of the rules both lists share in the same order (difflib's blocks)."""
    ids: dict[tuple, int] = {}  # rules as small integers: difflib hashes each element many times
    a = [ids.setdefault(_signature(r), len(ids)) for r in old.rules]
    b = [ids.setdefault(_signature(r), len(ids)) for r in new.rules]
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [tuple(block) for block in matcher.get_matching_blocks()]  # type: ignore[misc]


def changed_rules(old: Policy, new: Policy) -> tuple[list[Rule], list[Rule]]:
    """Rules only in the old list and only in the new one, after matching the longest common order."""
    kept_old: set[int] = set()
    kept_new: set[int] = set()
    for a, b, size in _matching_blocks(old, new):
        kept_old.update(range(a, a + size))
        kept_new.update(range(b, b + size))
    return ([r for r in old.rules if r.index not in kept_old], [r for r in new.rules if r.index not in kept_new])


def merged_list(old: Policy, new: Policy) -> tuple[list[Entry], list[int], list[int]]:
    """One list holding both: shared rules once, each list's own rules between them.

    Between two shared rules the old list's own rules come before the new
    list's, which keeps both orders. Returns the entries and each old and
    new rule's position (rank) in it.
    """
    entries: list[Entry] = []
    rank_old = [0] * len(old.rules)
    rank_new = [0] * len(new.rules)
    i = j = 0
    for a, b, size in _matching_blocks(old, new):
        for k in range(i, a):
            rank_old[k] = len(entries)
            entries.append(Entry(k, None, old.rules[k].action, None))
        for k in range(j, b):
            rank_new[k] = len(entries)
            entries.append(Entry(None, k, None, new.rules[k].action))
        for t in range(size):
            rank_old[a + t] = rank_new[b + t] = len(entries)
            entries.append(Entry(a + t, b + t, old.rules[a + t].action, new.rules[b + t].action))
        i, j = a + size, b + size
    return entries, rank_old, rank_new


# Elementary slabs the sweep may cut one bucket into, per cube of the cube
# budget (--cube-budget), before Z3 is asked about the bucket instead.
SLABS_PER_CUBE = 64

Raw = tuple[str | None, str | None, Label, Cube]  # (source domain, destination domain, label, cube)


class Differ:
    def __init__(self, old: Policy, new: Policy, universe: Match | None, budget: Budget | None):
        self.old, self.new, self.universe = old, new, universe
        self.regions = RegionMap([old, new])
        self.old_index = RuleIndex.build(old, self.regions)
        self.new_index = RuleIndex.build(new, self.regions)
        self.entries, self.rank_old, self.rank_new = merged_list(old, new)
        self.budget = budget or Budget()
        self.session: Session | None = None
        self.result = DiffResult()

    def _rule(self, rank: int) -> Rule:
        e = self.entries[rank]
        return self.old.rules[e.old] if e.old is not None else self.new.rules[e.new]  # type: ignore[index]

    def keys(self) -> list[tuple[int, int]]:
        """The buckets where a decision can change: every one when the defaults differ
        (the packets no rule matches change), else those of the rules only one list has."""
        if self.old.default is not self.new.default:
            n = len(self.regions.regions)
            return [(s, d) for s in range(n) for d in range(n)]
        found: dict[tuple[int, int], None] = {}
        for rank, e in enumerate(self.entries):
            if e.old is None or e.new is None:
                for key in self.old_index.keys_of(self._rule(rank).match):
                    found[key] = None
        return list(found)

    def run(self) -> DiffResult:
        raw: list[Raw] = []
        for key in self.keys():
            raw.extend((sd, dd, label, c) for sd, dd, label, cube in self._bucket(key)
                       if (c := well_formed(cube)) is not None)
        found = [(piece, w) for piece in _merge(raw) if (w := point(Match((piece[3],)))) is not None]
        witnesses = [w for _, w in found]
        checks = zip(deciders(self.old, self.old_index, witnesses), deciders(self.new, self.new_index, witnesses))
        for ((src_domain, dst_domain, (o, n), cube), w), decided in zip(found, checks):
            self.result.regions.append(self._region(cube, w, o, n, src_domain, dst_domain, True, decided))
        self.result.regions.sort(key=lambda r: (r.src_domain or "~", r.dst_domain or "~", r.old_action.value,
                                                r.new_action.value, r.old_line or 1 << 30, r.new_line or 1 << 30,
                                                r.cube.src, r.cube.dst, r.cube.proto, r.cube.dport))
        return self.result

    def _bucket(self, key: tuple[int, int]) -> list[Raw]:
        """The changed pieces of one (source region, destination region) bucket, by the sweep or else Z3."""
        src, dst = self.regions.regions[key[0]], self.regions.regions[key[1]]
        box = Cube(src=((src.lo, src.hi),), dst=((dst.lo, dst.hi),))
        ranks = sorted({self.rank_old[i] for i in self.old_index.buckets.get(key, ())}
                       | {self.rank_new[i] for i in self.new_index.buckets.get(key, ())})
        scope: list[Cube] | None = None
        if self.old.default is self.new.default:  # only packets some rule of one list alone matches
            scope = [c for r in ranks if self.entries[r].old is None or self.entries[r].new is None
                     for c in self._rule(r).match.cubes]
            if not scope:
                return []
        if self.universe is not None:
            scope = match_intersect(Match(tuple(scope)), self.universe).cubes if scope is not None \
                else self.universe.cubes
        if not ranks and scope is None:  # no rule here and the defaults differ: all of it changes
            return [(src.domain, dst.domain, (None, None), box)]
        cuts = [(r, c) for r in ranks for c in self._rule(r).match.cubes]
        sweep = Sweep(box, self.entries, cuts, self.old.default, self.new.default, scope,
                      self.budget.cubes * SLABS_PER_CUBE)
        try:
            return [(src.domain, dst.domain, label, cube) for label, cube in sweep.pieces()]
        except OverBudget:
            pass
        region = match_intersect(Match((box,)), Match(tuple(scope)) if scope is not None else EVERYTHING)
        old_rules = [r for i in self.old_index.buckets.get(key, ()) if meet((r := self.old.rules[i]).match, region)]
        new_rules = [r for i in self.new_index.buckets.get(key, ()) if meet((r := self.new.rules[i]).match, region)]
        try:
            self._solver(key, old_rules, new_rules, src.domain, dst.domain)
        except Undecided as exc:
            self.result.unknown.append(f"{src.domain or 'no domain'} -> {dst.domain or 'no domain'} "
                                       f"({_ranges(((src.lo, src.hi),), 'addr')[0]} -> "
                                       f"{_ranges(((dst.lo, dst.hi),), 'addr')[0]}): {exc.reason}")
        return []

    def _region(self, cube: Cube, w: Packet, o: int | None, n: int | None, src_domain: str | None,
                dst_domain: str | None, exact: bool, decided: tuple[int | None, int | None] | None = None
                ) -> ChangedRegion:
        """The region, once its witness is re-decided by another path than the one that found it."""
        if decided is None:
            decided = (deciders(self.old, self.old_index, [w])[0], deciders(self.new, self.new_index, [w])[0])
        d_old, d_new = decided
        old_action = self.old.rules[d_old].action if d_old is not None else self.old.default
        new_action = self.new.rules[d_new].action if d_new is not None else self.new.default
        if old_action is new_action or d_old != o or d_new != n:
            raise AssertionError(f"diff witness {w} does not show the change it reports")
        ro = self.old.rules[o] if o is not None else None
        rn = self.new.rules[n] if n is not None else None
        return ChangedRegion(cube, packets_in(cube) if exact else 1, w,
                             ro.name if ro else "default", old_action, ro.span.line if ro else None,
                             rn.name if rn else "default", new_action, rn.span.line if rn else None,
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
                cube = Cube(((w.src, w.src),), ((w.dst, w.dst),), ((w.proto, w.proto),), ((w.dport, w.dport),))
                self.result.regions.append(self._region(cube, w, ro if ro >= 0 else None, rn if rn >= 0 else None,
                                                        src_domain, dst_domain, exact=False))
                session.add(z3.Not(z3.And(a.rule == ro, b.rule == rn)))
            self.result.truncated = True
        finally:
            session.pop()


def deciders(policy: Policy, index: RuleIndex, packets: Sequence[Packet]) -> list[int | None]:
    """The index of the rule deciding each packet (None: the default), by first match
    over its bucket's rules, vectorised: a check of the sweep's labels by another path."""
    by_key: dict[tuple[int, int], list[int]] = {}
    for k, w in enumerate(packets):
        by_key.setdefault((index.regions.region_of(w.src).id, index.regions.region_of(w.dst).id), []).append(k)
    out: list[int | None] = [None] * len(packets)
    for key, ks in by_key.items():
        rows = [(i, s[0], s[1], d[0], d[1], p[0], p[1], q[0], q[1])  # one row per box, in rule order
                for i in index.buckets.get(key, ()) for c in policy.rules[i].match.cubes
                for s in c.src for d in c.dst for p in c.proto for q in c.dport]
        if not rows:
            continue
        box = np.asarray(rows, dtype=np.int64)
        step = max(1, (1 << 20) // len(rows))  # packets per block: a bounded matrix
        for at in range(0, len(ks), step):
            block = ks[at:at + step]
            pkt = np.asarray([(packets[k].src, packets[k].dst, packets[k].proto, packets[k].dport) for k in block],
                             dtype=np.int64)
            hit = np.ones((len(block), len(rows)), dtype=bool)
            for f in range(4):
                hit &= (box[None, :, 1 + 2 * f] <= pkt[:, None, f]) & (pkt[:, None, f] <= box[None, :, 2 + 2 * f])
            for k, found, first in zip(block, hit.any(axis=1), hit.argmax(axis=1)):
                out[k] = int(box[first, 0]) if found else None
    return out


_PORTED: IntervalSet = normalize((p, p) for p in PORTED_PROTOCOLS)


def well_formed(cube: Cube) -> Cube | None:
    """The cube with the same packets, written as a reader expects (None: it has none).

    The sweep cuts the whole (protocol, port) plane, where a protocol without
    ports carries only port 0: such protocols go when the ports miss 0, and a
    cube of only those protocols holds any port (so it reads "icmp any port"
    and merges with its neighbours). Only points that are no packet change.
    """
    portless = intersect(cube.proto, complement(_PORTED, PROTO_MAX))
    if not portless:
        return cube
    if not contains(cube.dport, 0):
        ported = intersect(cube.proto, _PORTED)
        return Cube(cube.src, cube.dst, ported, cube.dport) if ported else None
    if portless == cube.proto:
        return Cube(cube.src, cube.dst, cube.proto, FULL_PORT)
    return cube


def _merge(raw: list[Raw]) -> list[Raw]:
    """Pieces with the same domains and label that agree in three fields, as one (union of the fourth).

    The sweep already merges within a bucket; this joins buckets of one
    domain pair (a domain with several prefixes, the address gaps) and the
    protocols well_formed() rewrote. Field values are numbered first, so a
    long port list is hashed once, not once per comparison.
    """
    number: dict[IntervalSet, int] = {}
    value: list[IntervalSet] = []

    def num(intervals: IntervalSet) -> int:
        k = number.get(intervals)
        if k is None:
            k = number[intervals] = len(value)
            value.append(intervals)
        return k

    pieces = [(sd, dd, label, [num(c.src), num(c.dst), num(c.proto), num(c.dport)]) for sd, dd, label, c in raw]
    for f in range(4):
        joined: dict[tuple, list[int]] = {}
        for sd, dd, label, ids in pieces:
            joined.setdefault((sd, dd, label, *ids[:f], *ids[f + 1:]), []).append(ids[f])
        pieces = []
        for (sd, dd, label, *rest), sets in joined.items():
            merged = sets[0] if len(sets) == 1 else num(normalize(iv for k in sets for iv in value[k]))
            pieces.append((sd, dd, label, rest[:f] + [merged] + rest[f:]))
    return [(sd, dd, label, Cube(*(value[k] for k in ids))) for sd, dd, label, ids in pieces]


def diff(old: Policy, new: Policy, universe: Match | None = None, budget: Budget | None = None) -> DiffResult:
    """The packets whose decision differs, over every well-formed packet or only `universe` (tests)."""
    return Differ(old, new, universe, budget).run()
