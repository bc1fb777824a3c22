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
