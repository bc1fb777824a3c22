"""Where two first-match rule lists decide a box differently, by a sweep over field boundaries.

The two lists are given as one *merged* list (diff.py aligns them): rules
both share, rules only the old list has and rules only the new one has, in
an order consistent with both lists. A packet's old decision is the first
old-or-shared rule holding it, its new decision the first new-or-shared one,
else the policy's default.

The box is cut one field at a time (source, destination, protocol, then
destination port) at the boundaries of the rules' intervals, so every
elementary slab has a fixed set of rules that can still match in it; the
last field is labelled by a heap sweep (the first rule of each list active
on each port interval). Three things keep this near-linear in the rules:

- each slab passes down only the rules active in it, and stops looking past
  the first rule that holds the whole slab (nothing after it can decide);
- a slab is dropped as soon as every decision still possible in it has the
  same action (e.g. both lists' first rule there is one shared rule);
- results are memoised on (field, active rules, active scope): slabs with
  the same rules, which are most of them, are solved once.

Slabs with the same sub-result are merged back into one interval set per
field on the way up, so the pieces are few and maximal per field. The
answer is exact (interval arithmetic only); past `limit` elementary slabs it
raises OverBudget and the caller asks the solver instead.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass
from typing import Iterable, Sequence

from sealnet.compiler.ir import Action, Cube, IntervalSet, intersect, normalize

FIELDS = 4  # src, dst, proto, dport: the order of the sweep (the last is labelled by a heap)

Fields = tuple[IntervalSet, ...]
Label = tuple[int | None, int | None]  # (old deciding rule index, new deciding rule index); None: the default
Piece = tuple[Label, Cube]


@dataclass(frozen=True)
class Entry:
    """One rule of the merged list: its index in the old list, the new list, or both (shared)."""

    old: int | None
    new: int | None
    action_old: Action | None  # the rule's action where it is in the old list
    action_new: Action | None


class OverBudget(Exception):
    """The sweep cut the box into more slabs than its limit."""


def _fields(cube: Cube) -> Fields:
    return (cube.src, cube.dst, cube.proto, cube.dport)


def _clip(cube: Cube, box: Fields) -> Fields | None:
    out = []
    for f, b in zip((cube.src, cube.dst, cube.proto, cube.dport), box):
        if not (len(b) == 1 and f and b[0][0] <= f[0][0] and f[-1][1] <= b[0][1]):  # else within the box already
            f = intersect(f, b)
            if not f:
                return None
        out.append(f)
    return tuple(out)


class _Set:
    """An interval set with a fast `meets` test (bisect on the upper bounds)."""

    def __init__(self, intervals: IntervalSet):
        self.intervals = intervals
        self.his = [hi for _, hi in intervals]

    def meets(self, other: IntervalSet) -> bool:
        for lo, hi in other:
            i = bisect.bisect_left(self.his, lo)  # the first of ours ending at or after lo
            if i < len(self.intervals) and self.intervals[i][0] <= hi:
                return True
        return False


class Sweep:
    """The pieces of one box where the merged list's old and new decisions differ in action.

    cuts: (rank in the merged list, cube) for each rule cube filed in the box.
    scope: the only packets asked about (cubes), or None for the whole box.
    """

    def __init__(self, box: Cube, entries: Sequence[Entry], cuts: Sequence[tuple[int, Cube]],
                 old_default: Action, new_default: Action, scope: Sequence[Cube] | None, limit: int):
        self.box = _fields(box)
        self.entries = entries
        self.old_default, self.new_default = old_default, new_default
        self.scope: list[Fields] | None = None
        if scope is not None:
            self.scope = [f for cube in scope if (f := _clip(cube, self.box)) is not None]
            # a cut outside the scope's shadow on some field decides nothing asked about
            shadow = [_Set(_union(s[k] for s in self.scope)) for k in range(FIELDS)]
            cuts = [(rank, cube) for rank, cube in cuts
                    if all(shadow[k].meets(f) for k, f in enumerate(_fields(cube)))]
        clipped = sorted((rank, f) for rank, cube in cuts if (f := _clip(cube, self.box)) is not None)
        # The sweep's field order: most selective first (see _order); everything below is in that order.
        self.order = _order([f for _, f in clipped], self.box)
        clipped = [(rank, _permute(f, self.order)) for rank, f in clipped]
        self.box = _permute(self.box, self.order)
        self.ranges = [(f[0][0], f[-1][1]) for f in self.box]
        if self.scope is not None:
            self.scope = [_permute(f, self.order) for f in self.scope]
        # cut ids are positions in rank order, so sorting ids sorts ranks
        self.rank = [rank for rank, _ in clipped]
        self.cuts = [f for _, f in clipped]
        self.full_from = [self._full_from(f) for f in self.cuts]
        self.scope_full_from = [self._full_from(f) for f in self.scope or ()]
        self.limit = limit
        self.slabs = 0
        self.memo: dict[tuple, tuple] = {}

    def _full_from(self, fields: Fields) -> int:
        """The first field from which on the cube holds the whole box (FIELDS: none)."""
        level = FIELDS
        while level > 0 and fields[level - 1] == self.box[level - 1]:
            level -= 1
        return level

    def pieces(self) -> list[Piece]:
        if self.scope is not None and not self.scope:
            return []
        scope = None if self.scope is None else tuple(range(len(self.scope)))
        found = self._solve(0, frozenset(range(len(self.cuts))), None if scope is None else frozenset(scope))
        back = [self.order.index(k) for k in range(FIELDS)]
        return [(label, Cube(*_permute(fields, back))) for label, fields in found]

    def _count(self, n: int) -> None:
        self.slabs += n
        if self.slabs > self.limit:
            raise OverBudget()

    def _settle(self, level: int, cuts: tuple[int, ...]) -> tuple[bool, tuple[int, ...], Label | None]:
        """(anything can change, the cuts that can still decide, the label when both decisions are fixed)."""
        unset = -1
        old: int | None = unset
        new: int | None = unset
        old_actions: set[Action] = set()
        new_actions: set[Action] = set()
        keep: list[int] = []
        old_first = new_first = True  # no partial candidate before: a whole one alone decides
        changed = False  # a rule only one list has is among the candidates so far
        for c in cuts:
            e = self.entries[self.rank[c]]
            whole = self.full_from[c] <= level
            if e.old is None or e.new is None:
                changed = True
            elif whole and not changed:
                return False, (), None  # each packet's first rule here is shared: decided alike
            needed = False
            if old == unset and e.old is not None:
                needed = True
                old_actions.add(e.action_old)  # type: ignore[arg-type]
                if whole:
                    old = e.old
                else:
                    old_first = False
            if new == unset and e.new is not None:
                needed = True
                new_actions.add(e.action_new)  # type: ignore[arg-type]
                if whole:
                    new = e.new
                else:
                    new_first = False
            if needed:
                keep.append(c)
            if old != unset and new != unset:
                break
        if old == unset:
            old_actions.add(self.old_default)
            old = None if old_first else unset
        if new == unset:
            new_actions.add(self.new_default)
            new = None if new_first else unset
        if len(old_actions | new_actions) == 1:
            return False, (), None
        if old_first and new_first:
            return True, tuple(keep), (old, new)
        return True, tuple(keep), None

    def _solve(self, level: int, cuts: frozenset[int], scope: frozenset[int] | None) -> tuple:
        key = (level, cuts, scope)
        found = self.memo.get(key)
        if found is None:  # sorted (rank order) only when computed
            found = self.memo[key] = self._compute(level, tuple(sorted(cuts)),
                                                   None if scope is None else tuple(sorted(scope)))
        return found

    def _compute(self, level: int, cuts: tuple[int, ...], scope: tuple[int, ...] | None) -> tuple:
        live, cuts, label = self._settle(level, cuts)
        if not live:
            return ()
        if scope is not None and any(self.scope_full_from[s] <= level for s in scope):
            scope = None
        if label is not None and scope is None:
            return ((label, self.box[level:]),)
        if level == FIELDS - 1:
            return self._leaf(cuts, scope)
        return self._split(level, cuts, scope)

    def _split(self, level: int, cuts: tuple[int, ...], scope: tuple[int, ...] | None) -> tuple:
        lo_r, hi_r = self.ranges[level]
        starts: dict[int, list[tuple[int, int]]] = {}  # point -> (kind, id) starting there; kind 0 cut, 1 scope
        ends: dict[int, list[tuple[int, int]]] = {}
        members = [(0, c, self.cuts[c][level]) for c in cuts]
        if scope is not None:
            # boundaries outside the scope cut nothing asked about
            allowed = _union(self.scope[s][level] for s in scope)  # type: ignore[index]
            members = [(0, c, intersect(intervals, allowed)) for _, c, intervals in members]
            members += [(1, s, self.scope[s][level]) for s in scope]  # type: ignore[index]
        for kind, i, intervals in members:
            for lo, hi in intervals:
                starts.setdefault(lo, []).append((kind, i))
                ends.setdefault(hi + 1, []).append((kind, i))
        points = sorted(set(starts) | set(ends) | {lo_r, hi_r + 1})
        active: set[int] = set()
        active_scope: set[int] = set()
        groups: dict[tuple, list[list[int]]] = {}
        self._count(len(points) - 1)
        for p, q in zip(points, points[1:]):
            for kind, i in ends.get(p, ()):
                (active_scope if kind else active).discard(i)
            for kind, i in starts.get(p, ()):
                (active_scope if kind else active).add(i)
            if scope is not None and not active_scope:
                continue
            sub = self._solve(level + 1, frozenset(active), None if scope is None else frozenset(active_scope))
            for entry in sub:
                runs = groups.setdefault(entry, [])
                if runs and runs[-1][1] + 1 == p:
                    runs[-1][1] = q - 1
                else:
                    runs.append([p, q - 1])
        return tuple((label, (tuple((lo, hi) for lo, hi in runs),) + rest)
                     for (label, rest), runs in groups.items())

    def _leaf(self, cuts: tuple[int, ...], scope: tuple[int, ...] | None) -> tuple:
        """Label each port interval by the first old and new rule active on it."""
        lo_r, hi_r = self.ranges[-1]
        allowed: IntervalSet | None = None
        if scope is not None:
            allowed = _union(self.scope[s][-1] for s in scope)  # type: ignore[index]
        items = sorted((lo, hi, c) for c in cuts
                       for lo, hi in (self.cuts[c][-1] if allowed is None else intersect(self.cuts[c][-1], allowed)))
        points = sorted({lo_r, hi_r + 1} | {lo for lo, _, _ in items} | {hi + 1 for _, hi, _ in items})
        self._count(len(points) - 1)
        heap_old: list[tuple[int, int]] = []
        heap_new: list[tuple[int, int]] = []
        runs: dict[Label, list[list[int]]] = {}
        j = 0
        for p, q in zip(points, points[1:]):
            while j < len(items) and items[j][0] <= p:
                lo, hi, c = items[j]
                j += 1
                e = self.entries[self.rank[c]]
                if e.old is not None:
                    heapq.heappush(heap_old, (c, hi))
                if e.new is not None:
                    heapq.heappush(heap_new, (c, hi))
            while heap_old and heap_old[0][1] < p:
                heapq.heappop(heap_old)
            while heap_new and heap_new[0][1] < p:
                heapq.heappop(heap_new)
            o = heap_old[0][0] if heap_old else None
            n = heap_new[0][0] if heap_new else None
            if o is not None and o == n:
                continue  # one shared rule decides both
            eo = self.entries[self.rank[o]] if o is not None else None
            en = self.entries[self.rank[n]] if n is not None else None
            if (eo.action_old if eo else self.old_default) is (en.action_new if en else self.new_default):
                continue
            label = (eo.old if eo else None, en.new if en else None)
            mine = runs.setdefault(label, [])
            if mine and mine[-1][1] + 1 == p:
                mine[-1][1] = q - 1
            else:
                mine.append([p, q - 1])
        out = []
        for label, mine in runs.items():
            ports = tuple((lo, hi) for lo, hi in mine)
            if allowed is not None:
                ports = intersect(ports, allowed)
            if ports:
                out.append((label, (ports,)))
        return tuple(out)


def _permute(fields: Fields, order: Sequence[int]) -> Fields:
    return tuple(fields[k] for k in order)


def _order(cuts: Sequence[Fields], box: Fields) -> list[int]:
    """Fields by how many cuts stay active in an average slab of that field, fewest first.

    Cutting first where the rules are narrow (usually the port) leaves each
    slab few rules to look at below; a field most rules hold whole (usually
    the addresses of a bucket) is best swept last, by the heap.
    """
    scores = []
    for k in range(FIELDS):
        lo_r, hi_r = box[k][0][0], box[k][-1][1]
        intervals = [iv for c in cuts for iv in c[k]]
        at = {b: i for i, b in enumerate(sorted({lo_r, hi_r + 1} | {lo for lo, _ in intervals}
                                                | {hi + 1 for _, hi in intervals}))}
        spans = sum(at[hi + 1] - at[lo] for lo, hi in intervals)  # slabs each interval spans
        scores.append((spans / (len(at) - 1), k))
    return [k for _, k in sorted(scores)]


def _union(sets: Iterable[IntervalSet]) -> IntervalSet:
    return normalize(iv for s in sets for iv in s)
