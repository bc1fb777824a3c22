"""Checked IR -> decision tables for the eBPF data plane.

Design (why not a product table, why not an if-chain):

1. Source and destination addresses are cut into the elementary intervals of
   every rule cube's address boundaries. Intervals that lie in exactly the same
   set of cubes are merged into one *address class* (a bitset over cubes is the
   class key), so a /24 domain with 250 untouched hosts is one class.
   The data plane finds an address's class by a branchless binary search over
   the sorted interval starts.
2. For each (src class, dst class) pair the candidate cubes are the AND of the
   two bitsets. The pair's decision over the remaining two fields is a
   piecewise-constant function of the 24-bit key ``proto << 16 | dport``:
   a sorted list of (key start, deciding rule) *segments*, first match already
   applied. Pairs with the same candidate set share one segment list, so the
   size is bounded by the number of distinct candidate sets times their cube
   boundaries, never by the product of all four fields.
3. Per packet: two address searches, one pair-table read, one search in the
   pair's segment list: O(log n) with no per-rule work, exact by construction.

`TableSet.decide` is the same lookup in Python so tests can check the tables
against compiler/semantics.decide without a kernel.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass

from sealnet.compiler.ir import ADDR_MAX, Action, Cube, IntervalSet, Packet, Policy

KEY_MAX = (0xFF << 16) | 0xFFFF  # proto << 16 | dport
MAX_RULES = 0xFFFF  # rule indices are stored as u16 (the last value is the default)

ACTION_CODES: dict[Action, int] = {Action.DENY: 0, Action.ALLOW: 1, Action.SEAL: 2}


class TableError(ValueError):
    """The policy cannot be encoded in the data plane's tables."""


@dataclass(frozen=True)
class AddressClasses:
    starts: tuple[int, ...]  # sorted elementary interval starts, starts[0] == 0
    classes: tuple[int, ...]  # class id of each elementary interval
    count: int

    def lookup(self, addr: int) -> int:
        return self.classes[bisect.bisect_right(self.starts, addr) - 1]


@dataclass(frozen=True)
class TableSet:
    """Everything the data plane needs, as flat integer arrays."""

    rule_count: int  # index rule_count is the default
    rule_actions: tuple[int, ...]  # ACTION_CODES, length rule_count + 1
    src: AddressClasses
    dst: AddressClasses
    pair_segment: tuple[int, ...]  # [src_class * dst.count + dst_class] -> segment list id
    seg_start: tuple[int, ...]  # segment list i is entries seg_start[i] .. seg_start[i+1]-1
    entry_key: tuple[int, ...]  # proto << 16 | dport where a run starts (first of each list: 0)
    entry_rule: tuple[int, ...]  # deciding rule index of the run (rule_count: default)
    domain_start: tuple[int, ...] = (0,)  # address intervals -> domain id (0: none), for sealing
    domain_id: tuple[int, ...] = (0,)

    def domain_of(self, addr: int) -> int:
        return self.domain_id[bisect.bisect_right(self.domain_start, addr) - 1]

    def _run(self, packet: Packet) -> tuple[int, int]:
        s = self.src.lookup(packet.src)
        d = self.dst.lookup(packet.dst)
        seg = self.pair_segment[s * self.dst.count + d]
        lo, hi = self.seg_start[seg], self.seg_start[seg + 1]
        key = (packet.proto << 16) | packet.dport
        i = bisect.bisect_right(self.entry_key, key, lo, hi) - 1
        return i, hi

    def decide(self, packet: Packet) -> int:
        """The deciding rule index (rule_count for the default)."""
        i, _ = self._run(packet)
        return self.entry_rule[i]

    def decide_any_port(self, packet: Packet) -> int | None:
        """The deciding rule if it is the same for every dport of this proto, else None.

        Non-first IP fragments carry no L4 header: the data plane uses this.
        """
        i, hi = self._run(Packet(packet.src, packet.dst, packet.proto, 0, 0))
        if i + 1 < hi and self.entry_key[i + 1] <= (packet.proto << 16) | 0xFFFF:
            return None
        return self.entry_rule[i]

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "rules": self.rule_count,
            "src_intervals": len(self.src.starts),
            "src_classes": self.src.count,
            "dst_intervals": len(self.dst.starts),
            "dst_classes": self.dst.count,
            "segment_lists": len(self.seg_start) - 1,
            "entries": len(self.entry_key),
        }


def _cubes(policy: Policy) -> list[tuple[int, Cube]]:
    out: list[tuple[int, Cube]] = []
    for rule in policy.rules:
        for cube in rule.match.cubes:
            if not cube.is_empty():
                out.append((rule.index, cube))
    return out


def _address_classes(sets: list[IntervalSet]) -> tuple[AddressClasses, list[int]]:
    """Elementary intervals of all sets, merged by membership; plus each class's bitset."""
    events: dict[int, int] = {0: 0}  # boundary -> bits toggled there
    for bit, intervals in enumerate(sets):
        for lo, hi in intervals:
            events[lo] = events.get(lo, 0) ^ (1 << bit)
            if hi < ADDR_MAX:
                events[hi + 1] = events.get(hi + 1, 0) ^ (1 << bit)
    starts: list[int] = []
    classes: list[int] = []
    class_of: dict[int, int] = {}
    bitsets: list[int] = []
    active = 0
    for boundary in sorted(events):
        active ^= events[boundary]
        cls = class_of.get(active)
        if cls is None:
            cls = class_of[active] = len(bitsets)
            bitsets.append(active)
        # Adjacent intervals of the same class are one interval for the search.
        if classes and classes[-1] == cls:
            continue
        starts.append(boundary)
        classes.append(cls)
    return AddressClasses(tuple(starts), tuple(classes), len(bitsets)), bitsets


def _key_intervals(cube: Cube) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for plo, phi in cube.proto:
        for dlo, dhi in cube.dport:
            if dlo == 0 and dhi == 0xFFFF:
                out.append(((plo << 16), (phi << 16) | 0xFFFF))
            else:
                out.extend(((p << 16) | dlo, (p << 16) | dhi) for p in range(plo, phi + 1))
    return out


def _segments(cands: list[tuple[int, Cube]], default: int) -> list[tuple[int, int]]:
    """First-match over (proto, dport) keys: runs of (start key, rule index)."""
    events: dict[int, list[tuple[int, int]]] = {0: []}  # key -> [(+1/-1, rule)]
    for rule, cube in cands:
        for lo, hi in _key_intervals(cube):
            events.setdefault(lo, []).append((1, rule))
            if hi < KEY_MAX:
                events.setdefault(hi + 1, []).append((-1, rule))
    heap: list[int] = []
    removed: dict[int, int] = {}
    runs: list[tuple[int, int]] = []
    for key in sorted(events):
        for delta, rule in events[key]:
            if delta > 0:
                heapq.heappush(heap, rule)
            else:
                removed[rule] = removed.get(rule, 0) + 1
        while heap and removed.get(heap[0], 0):
            removed[heap[0]] -= 1
            heapq.heappop(heap)
        decider = heap[0] if heap else default
        if not runs or runs[-1][1] != decider:
            runs.append((key, decider))
    return runs


def build_tables(policy: Policy) -> TableSet:
    rule_count = len(policy.rules)
    if rule_count >= MAX_RULES:
        raise TableError(f"{rule_count} rules: the data plane holds at most {MAX_RULES - 1}")
    cubes = _cubes(policy)
    src, src_bits = _address_classes([c.src for _, c in cubes])
    dst, dst_bits = _address_classes([c.dst for _, c in cubes])
    seg_of: dict[int, int] = {}
    pair_segment: list[int] = []
    seg_start: list[int] = [0]
    entry_key: list[int] = []
    entry_rule: list[int] = []
    for sb in src_bits:
        for db in dst_bits:
            cand = sb & db
            seg = seg_of.get(cand)
            if seg is None:
                seg = seg_of[cand] = len(seg_start) - 1
                chosen: list[tuple[int, Cube]] = []
                bits = cand
                while bits:
                    low = bits & -bits
                    chosen.append(cubes[low.bit_length() - 1])
                    bits ^= low
                for key, rule in _segments(chosen, rule_count):
                    entry_key.append(key)
                    entry_rule.append(rule)
                seg_start.append(len(entry_key))
            pair_segment.append(seg)
    dom_start: list[int] = []
    dom_id: list[int] = []
    edges = sorted((lo, hi, d.id) for d in policy.domains for lo, hi in d.addresses)
    nxt = 0
    for lo, hi, did in edges:  # node CIDRs of different domains never overlap (checker)
        if lo > nxt or not dom_start:
            if lo > nxt:
                dom_start.append(nxt)
                dom_id.append(0)
        dom_start.append(lo)
        dom_id.append(did)
        nxt = hi + 1
    if not dom_start or dom_start[0] != 0:
        dom_start.insert(0, 0)
        dom_id.insert(0, 0)
    if nxt <= ADDR_MAX and edges:
        dom_start.append(nxt)
        dom_id.append(0)
    actions = [ACTION_CODES[r.action] for r in policy.rules] + [ACTION_CODES[policy.default]]
    return TableSet(
        rule_count=rule_count,
        rule_actions=tuple(actions),
        src=src,
        dst=dst,
        pair_segment=tuple(pair_segment),
        seg_start=tuple(seg_start),
        entry_key=tuple(entry_key),
        entry_rule=tuple(entry_rule),
        domain_start=tuple(dom_start),
        domain_id=tuple(dom_id),
    )
