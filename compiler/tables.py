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
4. Narrow cubes live in their own segment lists. A rule naming one host (or
   any address set smaller than every domain) makes that host its own class;
   folded into the pair's list, its one or two segments would copy the whole
   (domain, domain) list, once per host (436k entries at 10,000 rules). Since
   first match over a union of rules is the *minimum* of the first matches
   over its parts (the default, rule_count, is larger than every rule), each
   pair keeps two lists, one over its wide cubes (shared by every host of the
   domain) and one over its narrow cubes (a few entries), and the deciding
   rule is the smaller of the two answers.
5. Address-prefix index: each address search starts from a bucket of a direct
   table indexed by `(addr - base) >> shift` over the span of the interval
   starts (buckets below and above the span are the first and last), so it
   searches the few intervals of one bucket instead of all of them: at 10,000
   rules, one or two steps instead of twelve.

`TableSet.decide` is the same lookup in Python so tests can check the tables
against compiler/semantics.decide without a kernel.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass

from sealnet.compiler.ir import ADDR_MAX, Action, Cube, IntervalSet, Packet, Policy
from sealnet.contracts import abi

KEY_MAX = (0xFF << 16) | 0xFFFF  # proto << 16 | dport
MAX_RULES = 0xFFFF  # rule indices are stored as u16 (the last value is the default)

# The rule_action table's codes: the data plane's enum sealnet_action, by name.
ACTION_CODES: dict[Action, int] = {a: int(abi.Action[a.name]) for a in Action}


class TableError(ValueError):
    """The policy cannot be encoded in the data plane's tables."""


INDEX_BUCKETS = 4096  # address-prefix index buckets inside the span (16 KiB of u32 per table)


@dataclass(frozen=True)
class PrefixIndex:
    """Direct index over interval starts: bucket -> first interval to search.

    Bucket 0 holds addresses below `base`, bucket 1 + ((addr - base) >> shift)
    the span, the last bucket everything above it. `first[b]` is the interval
    holding bucket b's lowest address; the search for an address in bucket b
    covers intervals first[b] .. first[b + 1] (one sentinel entry at the end).
    """

    base: int
    shift: int
    buckets: int  # in the span; the table has buckets + 3 entries
    first: tuple[int, ...]

    def bucket(self, addr: int) -> int:
        if addr < self.base:
            return 0
        return min((addr - self.base) >> self.shift, self.buckets) + 1

    def window(self, addr: int) -> tuple[int, int]:
        """(first interval, count) to search for this address."""
        b = self.bucket(addr)
        return self.first[b], self.first[b + 1] - self.first[b] + 1


def _prefix_index(starts: tuple[int, ...]) -> PrefixIndex:
    base = starts[1] if len(starts) > 1 else 0
    span = starts[-1] - base + 1
    # About two buckets per interval (a few hundred bytes for a small policy), at most INDEX_BUCKETS.
    limit = min(INDEX_BUCKETS, 2 * len(starts))
    shift = 0
    while (span - 1) >> shift >= limit:
        shift += 1
    buckets = ((span - 1) >> shift) + 1
    lows = [0] + [base + (b << shift) for b in range(buckets)] + [min(base + (buckets << shift), ADDR_MAX)]
    first = [bisect.bisect_right(starts, a) - 1 for a in lows] + [len(starts) - 1]
    return PrefixIndex(base, shift, buckets, tuple(first))


@dataclass(frozen=True)
class AddressClasses:
    starts: tuple[int, ...]  # sorted elementary interval starts, starts[0] == 0
    classes: tuple[int, ...]  # class id of each elementary interval
    count: int
    index: PrefixIndex

    def lookup(self, addr: int) -> int:
        # The same two steps as the data plane: the bucket's window, then a search in it.
        lo, n = self.index.window(addr)
        return self.classes[bisect.bisect_right(self.starts, addr, lo, lo + n) - 1]


@dataclass(frozen=True)
class TableSet:
    """Everything the data plane needs, as flat integer arrays."""

    rule_count: int  # index rule_count is the default
    rule_actions: tuple[int, ...]  # ACTION_CODES, length rule_count + 1
    src: AddressClasses
    dst: AddressClasses
    pair_segment: tuple[int, ...]  # [src_class * dst.count + dst_class] -> list over wide cubes
    pair_narrow: tuple[int, ...]  # same index -> segment list over narrow cubes
    seg_start: tuple[int, ...]  # segment list i is entries seg_start[i] .. seg_start[i+1]-1
    entry_key: tuple[int, ...]  # proto << 16 | dport where a run starts (first of each list: 0)
    entry_rule: tuple[int, ...]  # deciding rule index of the run (rule_count: default)
    domain_start: tuple[int, ...] = (0,)  # address intervals -> domain id (0: none), for sealing
    domain_id: tuple[int, ...] = (0,)

    def domain_of(self, addr: int) -> int:
        return self.domain_id[bisect.bisect_right(self.domain_start, addr) - 1]

    def _runs(self, packet: Packet) -> list[tuple[int, int]]:
        """(entry, list end) in the pair's wide and narrow lists."""
        pair = self.src.lookup(packet.src) * self.dst.count + self.dst.lookup(packet.dst)
        key = (packet.proto << 16) | packet.dport
        out = []
        for seg in (self.pair_segment[pair], self.pair_narrow[pair]):
            lo, hi = self.seg_start[seg], self.seg_start[seg + 1]
            out.append((bisect.bisect_right(self.entry_key, key, lo, hi) - 1, hi))
        return out

    def decide(self, packet: Packet) -> int:
        """The deciding rule index (rule_count for the default)."""
        return min(self.entry_rule[i] for i, _ in self._runs(packet))

    def decide_any_port(self, packet: Packet) -> int | None:
        """The deciding rule if it is the same for every dport of this proto, else None.

        Non-first IP fragments carry no L4 header: the data plane uses this.
        Fail closed: None as soon as either list changes within the protocol.
        """
        runs = self._runs(Packet(packet.src, packet.dst, packet.proto, 0, 0))
        for i, hi in runs:
            if i + 1 < hi and self.entry_key[i + 1] <= (packet.proto << 16) | 0xFFFF:
                return None
        return min(self.entry_rule[i] for i, _ in runs)

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "rules": self.rule_count,
            "src_intervals": len(self.src.starts),
            "src_classes": self.src.count,
            "dst_intervals": len(self.dst.starts),
            "dst_classes": self.dst.count,
            "src_index_buckets": len(self.src.index.first),
            "dst_index_buckets": len(self.dst.index.first),
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
    return AddressClasses(tuple(starts), tuple(classes), len(bitsets), _prefix_index(tuple(starts))), bitsets


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


def _size(intervals: IntervalSet) -> int:
    return sum(hi - lo + 1 for lo, hi in intervals)


def _narrow_mask(policy: Policy, cubes: list[tuple[int, Cube]]) -> int:
    """Bits of the cubes that name fewer addresses, on either side, than the smallest domain."""
    sizes = [_size(d.addresses) for d in policy.domains if d.addresses]
    smallest = min(sizes) if sizes else 256
    mask = 0
    for bit, (_, cube) in enumerate(cubes):
        if min(_size(cube.src), _size(cube.dst)) < smallest:
            mask |= 1 << bit
    return mask


def build_tables(policy: Policy) -> TableSet:
    rule_count = len(policy.rules)
    if rule_count >= MAX_RULES:
        raise TableError(f"{rule_count} rules: the data plane holds at most {MAX_RULES - 1}")
    cubes = _cubes(policy)
    src, src_bits = _address_classes([c.src for _, c in cubes])
    dst, dst_bits = _address_classes([c.dst for _, c in cubes])
    narrow = _narrow_mask(policy, cubes)
    seg_of: dict[int, int] = {}
    pair_segment: list[int] = []
    pair_narrow: list[int] = []
    seg_start: list[int] = [0]
    entry_key: list[int] = []
    entry_rule: list[int] = []

    def segment_list(cand: int) -> int:
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
        return seg

    for sb in src_bits:
        for db in dst_bits:
            cand = sb & db
            pair_segment.append(segment_list(cand & ~narrow))
            pair_narrow.append(segment_list(cand & narrow))
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
        pair_narrow=tuple(pair_narrow),
        seg_start=tuple(seg_start),
        entry_key=tuple(entry_key),
        entry_rule=tuple(entry_rule),
        domain_start=tuple(dom_start),
        domain_id=tuple(dom_id),
    )
