"""An index of rules by the address regions they touch.

The address space is cut into regions at every domain boundary (each
domain's intervals, and the gaps between them). A rule is filed under every
(source region, destination region) pair its match intersects, so the only
rules that can match a packet are those filed under its pair. This is the
cheap interval pre-check that keeps verification and diff near-linear:
rules in different buckets are never compared, and the solver only ever sees
the few rules that share one.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from sealnet.compiler.ir import ADDR_MAX, PORTED_PROTOCOLS, IntervalSet, Match, Packet, Policy, Rule, contains


@dataclass(frozen=True)
class Region:
    id: int
    lo: int
    hi: int
    domain: str | None  # the domain whose nodes these are, or None for a gap


class RegionMap:
    """Regions from the boundaries of one or more policies' domains."""

    def __init__(self, policies: Sequence[Policy]):
        owner: dict[tuple[int, int], str] = {}
        cuts = {0, ADDR_MAX + 1}
        for policy in policies:
            for d in policy.domains:
                for lo, hi in d.addresses:
                    cuts.update((lo, hi + 1))
                    owner[(lo, hi)] = d.name
        edges = sorted(cuts)
        self.starts = edges[:-1]
        self.regions: list[Region] = []
        for i, (lo, nxt) in enumerate(zip(edges, edges[1:])):
            hi = nxt - 1
            name = None
            for policy in policies:
                dom = policy.domain_of(lo)
                if dom is not None:
                    name = dom.name
                    break
            self.regions.append(Region(i, lo, hi, name))

    def region_of(self, addr: int) -> Region:
        return self.regions[bisect.bisect_right(self.starts, addr) - 1]

    def regions_of(self, intervals: IntervalSet) -> list[int]:
        ids: list[int] = []
        for lo, hi in intervals:
            first = bisect.bisect_right(self.starts, lo) - 1
            last = bisect.bisect_right(self.starts, hi) - 1
            ids.extend(range(first, last + 1))
        return ids


@dataclass
class RuleIndex:
    """Rules of one policy filed by (src region, dst region)."""

    regions: RegionMap
    rules: Sequence[Rule]
    buckets: dict[tuple[int, int], list[int]] = field(default_factory=dict)

    @classmethod
    def build(cls, policy: Policy, regions: RegionMap | None = None) -> "RuleIndex":
        index = cls(regions or RegionMap([policy]), policy.rules)
        for rule in policy.rules:
            for key in index.keys_of(rule.match):
                bucket = index.buckets.setdefault(key, [])
                if not bucket or bucket[-1] != rule.index:
                    bucket.append(rule.index)
        return index

    def keys_of(self, match: Match) -> list[tuple[int, int]]:
        keys: dict[tuple[int, int], None] = {}
        for cube in match.cubes:
            for s in self.regions.regions_of(cube.src):
                for d in self.regions.regions_of(cube.dst):
                    keys[(s, d)] = None
        return list(keys)

    def candidates(self, match: Match) -> list[int]:
        """Indices (ascending) of rules that might share a packet with `match`."""
        found: set[int] = set()
        for key in self.keys_of(match):
            found.update(self.buckets.get(key, ()))
        return sorted(found)

    def decide_index(self, packet: Packet, skip: int | None = None) -> int | None:
        """The deciding rule's index (None: default), looking only at the packet's bucket."""
        key = (self.regions.region_of(packet.src).id, self.regions.region_of(packet.dst).id)
        for i in self.buckets.get(key, ()):
            if i != skip and self.rules[i].match.matches(packet):
                return i
        return None


def a_point(match: Match) -> Packet | None:
    """Some well-formed packet of a match, or None when it has none.

    Protocols without ports carry dport 0, so such a protocol only fits a
    cube whose ports include 0.
    """
    for cube in match.cubes:
        if cube.is_empty():
            continue
        for proto in PORTED_PROTOCOLS:
            if contains(cube.proto, proto):
                return Packet(cube.src[0][0], cube.dst[0][0], proto, 0, cube.dport[0][0])
        if contains(cube.dport, 0):
            portless = next((p for lo, hi in cube.proto for p in range(lo, min(hi, lo + 3) + 1)
                             if p not in PORTED_PROTOCOLS), None)
            if portless is not None:
                return Packet(cube.src[0][0], cube.dst[0][0], portless, 0, 0)
    return None


# A cube with more boxes than this (a product of long interval lists) is tested cube by cube instead.
MAX_BOXES = 64


def boxes_of(match: Match) -> list[tuple[int, ...]] | None:
    """The match as boxes (one interval per field): the product of each cube's
    interval lists. None when that is more than MAX_BOXES."""
    out: list[tuple[int, ...]] = []
    for c in match.cubes:
        if c.is_empty():
            continue
        if len(c.src) * len(c.dst) * len(c.proto) * len(c.dport) + len(out) > MAX_BOXES:
            return None
        out.extend((s[0], s[1], d[0], d[1], p[0], p[1], q[0], q[1])
                   for s in c.src for d in c.dst for p in c.proto for q in c.dport)
    return out


def boxes_meet(rows: np.ndarray, q: tuple[int, ...]) -> np.ndarray:
    """Which boxes share a well-formed packet with box q: the four fields meet, and
    the common protocols include a ported one, or a portless one with port 0 in common."""
    plo, phi = np.maximum(rows[:, 4], q[4]), np.minimum(rows[:, 5], q[5])
    dlo, dhi = np.maximum(rows[:, 6], q[6]), np.minimum(rows[:, 7], q[7])
    ported = np.zeros(len(rows), dtype=np.int64)
    for p in PORTED_PROTOCOLS:
        ported += (plo <= p) & (p <= phi)
    well_formed = (ported > 0) | ((dlo == 0) & (phi - plo + 1 > ported))
    return ((rows[:, 0] <= q[1]) & (q[0] <= rows[:, 1]) & (rows[:, 2] <= q[3]) & (q[2] <= rows[:, 3])
            & (plo <= phi) & (dlo <= dhi) & well_formed)


class RuleBoxes:
    """Every rule's match as rows of boxes, so which of many rules share a packet
    with a match is one exact vector test (firstmatch.meet's answer) instead of a loop."""

    def __init__(self, matches: Sequence[Match]):
        rows: list[tuple[int, ...]] = []
        self.start = np.zeros(len(matches), dtype=np.int64)
        self.count = np.zeros(len(matches), dtype=np.int64)
        self.wide = np.zeros(len(matches), dtype=bool)  # too many boxes: the caller tests these itself
        for i, m in enumerate(matches):
            boxes = boxes_of(m)
            self.start[i] = len(rows)
            if boxes is None:
                self.wide[i] = True
            else:
                rows.extend(boxes)
                self.count[i] = len(boxes)
        self.rows = np.asarray(rows or np.zeros((0, 8)), dtype=np.int64).reshape(-1, 8)

    def meeting(self, match: Match, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Of the rules `ids` (ascending): those that share a well-formed packet with
        `match`, and those too wide to say (test them yourself). None: the match is too wide."""
        query = boxes_of(match)
        if query is None:
            return None
        wide = ids[self.wide[ids]]
        ids = ids[~self.wide[ids]]
        counts = self.count[ids]
        total = int(counts.sum())
        if total == 0:
            return ids[:0], wide
        ends = np.cumsum(counts)
        rows = np.repeat(self.start[ids] - (ends - counts), counts) + np.arange(total)
        owner = np.repeat(np.arange(len(ids)), counts)
        boxes = self.rows[rows]
        hit = np.zeros(total, dtype=bool)
        for q in query:
            hit |= boxes_meet(boxes, q)
        mine = np.zeros(len(ids), dtype=bool)
        mine[owner[hit]] = True
        return ids[mine], wide
