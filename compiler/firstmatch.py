"""First-match decisions by exact cube arithmetic: what the verifier and diff
decide without a solver.

A region (a Match) is cut by an ordered rule list into *pieces*: the packets
each rule decides, and the rest that falls to the default. Cube subtraction
is exact, so a piece with no well-formed packet (`is_void`) really is empty;
the only limit is size, so every function here takes a cube budget and
returns None past it (the caller then asks Z3). Witness points are chosen
where a reader recognises them: a host address (.1 rather than the network
address .0) when the region has one.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Sequence

import numpy as np

from sealnet.compiler.cubes import match_intersect, match_size
from sealnet.compiler.solving import DEFAULT_CUBE_BUDGET
from sealnet.compiler.ir import (ADDR_MAX, PORT_MAX, PORTED_PROTOCOLS, PROTO_MAX, Action, Cube, IntervalSet, Match, Packet,
                                 Rule, complement, contains, intersect)

# Cubes a region may fragment into before the arithmetic gives up.
CUBE_BUDGET = DEFAULT_CUBE_BUDGET

Piece = tuple[Rule | None, Match]  # (deciding rule or None for the default, its packets)

# Below this many cubes a plain scan beats an array test (numpy's per-call cost).
_SCAN = 24


def _host(intervals: IntervalSet, avoid: int | None = None) -> int:
    """An address of the set a reader recognises: the first host after a .0 network
    address (and another one than `avoid`, the source, when the set has one)."""
    for lo, hi in intervals:
        first = lo + 1 if lo & 0xFF == 0 and lo + 1 <= hi else lo
        if first == avoid and first + 1 <= hi:
            first += 1
        if first != avoid or (lo, hi) == intervals[-1]:
            return first
    return intervals[0][0]


def _port(intervals: IntervalSet) -> int:
    """The lowest port, but 1 rather than 0 when the set has both (0 is no service)."""
    for lo, hi in intervals:
        if lo == 0 and hi == 0:
            continue
        return 1 if lo == 0 else lo
    return 0


def cube_point(cube: Cube) -> Packet | None:
    """A well-formed packet of one cube (ports only for tcp/udp), or None."""
    if cube.is_empty():
        return None
    src = _host(cube.src)
    dst = _host(cube.dst, avoid=src)
    for proto in PORTED_PROTOCOLS:
        if contains(cube.proto, proto):
            return Packet(src, dst, proto, 0, _port(cube.dport))
    if contains(cube.dport, 0):
        for lo, hi in cube.proto:
            for p in range(lo, min(hi, lo + 3) + 1):
                if p not in PORTED_PROTOCOLS:
                    return Packet(src, dst, p, 0, 0)
    return None


def point(match: Match) -> Packet | None:
    """A well-formed packet of the match at a recognisable address, or None when it has none."""
    for cube in match.cubes:
        found = cube_point(cube)
        if found is not None:
            return found
    return None


def is_void(match: Match) -> bool:
    """True when the match holds no well-formed packet."""
    return point(match) is None


def _meet(a: IntervalSet, b: IntervalSet) -> bool:
    if len(a) == 1 and len(b) == 1:  # the common case: one interval each
        return a[0][0] <= b[0][1] and b[0][0] <= a[0][1]
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


@functools.lru_cache(maxsize=4096)
def _ported(proto: IntervalSet) -> int:
    """The ported protocols in a protocol set, as bits (one per PORTED_PROTOCOLS entry)."""
    return sum(1 << k for k, p in enumerate(PORTED_PROTOCOLS) if contains(proto, p))


def cubes_meet(x: Cube, y: Cube) -> bool:
    """Do two cubes share a well-formed packet? (No cube is built: this is the hot test.)"""
    if not (_meet(x.dport, y.dport) and _meet(x.src, y.src) and _meet(x.dst, y.dst) and _meet(x.proto, y.proto)):
        return False
    if _ported(x.proto) & _ported(y.proto):
        return True  # and the ports meet
    # only protocols without ports in common, if any: they carry dport 0
    return (contains(x.dport, 0) and contains(y.dport, 0)
            and any(p not in PORTED_PROTOCOLS for lo, hi in intersect(x.proto, y.proto)
                    for p in range(lo, min(hi, lo + 3) + 1)))


def meet(a: Match, b: Match) -> bool:
    """Do two matches share a well-formed packet?"""
    return any(cubes_meet(x, y) for x in a.cubes for y in b.cubes)


def _isect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    """ir.intersect, with the one-interval case done at once (this is the inner loop of every cut)."""
    if len(b) == 1:
        blo, bhi = b[0]
        return tuple((max(lo, blo), min(hi, bhi)) for lo, hi in a if lo <= bhi and blo <= hi)
    if len(a) == 1:
        alo, ahi = a[0]
        return tuple((max(lo, alo), min(hi, ahi)) for lo, hi in b if lo <= ahi and alo <= hi)
    return intersect(a, b)


def _split(mine: IntervalSet, theirs: IntervalSet, maximum: int) -> tuple[IntervalSet, IntervalSet]:
    """(mine outside theirs, mine inside theirs), as cubes.cube_subtract computes them."""
    if _within(mine, theirs):
        return (), mine
    if len(theirs) == 1:
        tlo, thi = theirs[0]
        outside = tuple(iv for lo, hi in mine for iv in ((lo, min(hi, tlo - 1)), (max(lo, thi + 1), hi))
                        if iv[0] <= iv[1])
        return outside, _isect(mine, theirs)
    return intersect(mine, complement(theirs, maximum)), _isect(mine, theirs)


def _cube_cut(a: Cube, b: Cube) -> list[Cube]:
    """cubes.cube_subtract(a, b) for cubes that meet: the same pieces in the same order."""
    out: list[Cube] = []
    src, dst, proto, dport = a.src, a.dst, a.proto, a.dport
    outside, src = _split(src, b.src, ADDR_MAX)
    if outside:
        out.append(Cube(outside, dst, proto, dport))
    outside, dst = _split(dst, b.dst, ADDR_MAX)
    if outside:
        out.append(Cube(src, outside, proto, dport))
    outside, proto = _split(proto, b.proto, PROTO_MAX)
    if outside:
        out.append(Cube(src, dst, outside, dport))
    outside, dport = _split(dport, b.dport, PORT_MAX)
    if outside:
        out.append(Cube(src, dst, proto, outside))
    return out


def _cube_and(a: Cube, b: Cube) -> Cube | None:
    """cubes.cube_intersect."""
    src = _isect(a.src, b.src)
    if not src:
        return None
    dst = _isect(a.dst, b.dst)
    if not dst:
        return None
    proto = _isect(a.proto, b.proto)
    if not proto:
        return None
    dport = _isect(a.dport, b.dport)
    return Cube(src, dst, proto, dport) if dport else None


def _prune(cubes: list[Cube]) -> list[Cube]:
    return [c for c in cubes if cube_point(c) is not None]


Hull = tuple[int, int, int, int, int, int, int, int]


def _hull(c: Cube) -> Hull:
    """The cube's bounding box (fields must be non-empty): lowest and highest value of each field."""
    return (c.src[0][0], c.src[-1][1], c.dst[0][0], c.dst[-1][1],
            c.proto[0][0], c.proto[-1][1], c.dport[0][0], c.dport[-1][1])


def _hulls(cubes: Sequence[Cube]) -> np.ndarray:
    return np.array([_hull(c) for c in cubes], dtype=np.int64).reshape(-1, 8)


def _near(hulls: np.ndarray, q: Hull) -> np.ndarray:
    """Rows whose box meets box q: the only cubes that can share a point with q's cube."""
    h = hulls
    return np.flatnonzero((h[:, 0] <= q[1]) & (q[0] <= h[:, 1]) & (h[:, 2] <= q[3]) & (q[2] <= h[:, 3])
                          & (h[:, 4] <= q[5]) & (q[4] <= h[:, 5]) & (h[:, 6] <= q[7]) & (q[6] <= h[:, 7]))


class _Pieces:
    """An ordered list of cubes cut down one cube at a time, exactly as `subtract` does.

    The cubes' bounding boxes sit in an array, so a cut looks only at the few
    pieces near it instead of every piece: regions that fragment into
    thousands of pieces (a broad rule less hundreds of earlier ones) cost a
    vector test per cut, not a Python loop. Order, pieces and void-dropping
    are those of the plain loop (the box test only skips cubes that cannot meet).
    """

    def __init__(self, cubes: list[Cube]):
        self.cubes = cubes
        self._boxes: np.ndarray | None = None  # built on first need, kept in step with cubes

    def near(self, c: Cube) -> list[int]:
        """Indices (ascending) of the pieces whose boxes meet c's."""
        if c.is_empty():
            return []
        if len(self.cubes) < _SCAN:
            return list(range(len(self.cubes)))
        if self._boxes is None:
            self._boxes = _hulls(self.cubes)
        return _near(self._boxes, _hull(c)).tolist()

    def meeting(self, c: Cube) -> list[int]:
        """Indices (ascending) of the pieces that share a well-formed packet with c."""
        return [i for i in self.near(c) if cubes_meet(self.cubes[i], c)]

    def cut(self, c: Cube) -> list[Cube]:
        """Remove c's packets (void fragments dropped, order kept); returns the pieces it changed."""
        hit = self.meeting(c)
        if not hit:
            return []
        cubes, boxes = self.cubes, self._boxes
        out: list[Cube] = []
        parts: list[np.ndarray] = []
        prev = 0
        for i in hit:
            kids = [x for x in _cube_cut(cubes[i], c) if cube_point(x) is not None]
            out.extend(cubes[prev:i])
            out.extend(kids)
            if boxes is not None:
                parts.append(boxes[prev:i])
                if kids:
                    parts.append(_hulls(kids))
            prev = i + 1
        out.extend(cubes[prev:])
        changed = [cubes[i] for i in hit]
        self.cubes = out
        if boxes is None or len(out) < _SCAN:
            self._boxes = None
        else:
            parts.append(boxes[prev:])
            self._boxes = np.concatenate(parts)
        return changed


def subtract(region: Match, cuts: Iterable[Match], budget: int = CUBE_BUDGET) -> Match | None:
    """region minus every cut (void pieces dropped), or None past the budget."""
    pieces = _Pieces(_prune(list(region.cubes)))
    for cut in cuts:
        for c in cut.cubes:
            if not pieces.cubes:
                return Match(())
            pieces.cut(c)
            if len(pieces.cubes) > budget:
                return None
    return Match(tuple(pieces.cubes))


def partition(region: Match, rules: Sequence[Rule], budget: int = CUBE_BUDGET) -> list[Piece] | None:
    """The packets of `region` each rule decides (first match), then the rest (rule None).

    Only non-void pieces are listed. None past the budget.
    """
    pieces: list[Piece] = []
    rest = _Pieces(_prune(list(region.cubes)))
    for rule in rules:
        if not rest.cubes:
            break
        hit = sorted({i for y in rule.match.cubes for i in rest.meeting(y)})
        if not hit:
            continue
        # the rest's pieces in order, each cut by each of the rule's cubes (as match_intersect, pruned)
        mine = [z for i in hit for y in rule.match.cubes
                if (z := _cube_and(rest.cubes[i], y)) is not None and cube_point(z) is not None]
        pieces.append((rule, Match(tuple(mine))))
        for c in rule.match.cubes:
            if not rest.cubes:
                break
            rest.cut(c)
            if len(rest.cubes) > budget:
                return None
    if rest.cubes:
        pieces.append((None, Match(tuple(rest.cubes))))
    return pieces


def _overlap_size(rest: _Pieces, match: Match) -> int:
    """match_size(match_intersect(rest, match)): the points they share, well-formed or not."""
    total = 0
    for y in match.cubes:
        for i in rest.near(y):
            z = _cube_and(rest.cubes[i], y)
            if z is not None:
                total += match_size(Match((z,)))
    return total


def _match_hull(match: Match) -> Hull:
    """One box around all of a match's cubes (an inverted box when it has none)."""
    hulls = [_hull(c) for c in match.cubes if not c.is_empty()]
    if not hulls:
        return (1, 0, 1, 0, 1, 0, 1, 0)
    return tuple(min(col) if k % 2 == 0 else max(col) for k, col in enumerate(zip(*hulls)))  # type: ignore[return-value]


def minimal_cover(region: Match, candidates: Sequence[Rule], action: Action,
                  budget: int = CUBE_BUDGET) -> list[Rule] | None:
    """A set of candidates whose matches together hold every packet of `region`,
    none of them unnecessary (greedy cover, then pruned); those with an action
    other than `action` first. None when they do not cover it or past the budget.

    Greedy: each round takes the candidate sharing the most points with what is
    left (ties: the earlier one, but one with another action over one with
    `action`). A candidate's count changes only when a piece it touches was cut,
    so only those are counted again. Pruning: a chosen rule is unnecessary when
    the others hold the region's packets inside it.
    """
    rest = _Pieces(_prune(list(region.cubes)))
    chosen: list[Rule] = []
    pool = list(candidates)
    alive = [True] * len(pool)
    sizes = [_overlap_size(rest, rule.match) for rule in pool]
    boxes = np.array([_match_hull(rule.match) for rule in pool], dtype=np.int64).reshape(-1, 8)
    while rest.cubes:
        best, best_size = -1, 0
        for k, rule in enumerate(pool):
            if not alive[k]:
                continue
            size = sizes[k]
            if size > best_size or (size == best_size and size and best >= 0
                                    and pool[best].action is action and rule.action is not action):
                best, best_size = k, size
        if best < 0:
            return None
        chosen.append(pool[best])
        alive[best] = False
        changed: list[Cube] = []
        for c in pool[best].match.cubes:
            if not rest.cubes:
                break
            changed.extend(rest.cut(c))
            if len(rest.cubes) > budget:
                return None
        touched: set[int] = set()
        for x in changed:
            touched.update(_near(boxes, _hull(x)).tolist())
        for k in touched:
            if alive[k]:
                sizes[k] = _overlap_size(rest, pool[k].match)
    for rule in list(reversed(chosen)):
        inside = match_intersect(region, rule.match)
        others = [r.match for r in chosen if r is not rule and meet(inside, r.match)]
        left = subtract(inside, others, budget)
        if left is None:
            left = subtract(region, [r.match for r in chosen if r is not rule], budget)
            if left is None:
                return None
        if not left.cubes:
            chosen.remove(rule)
    chosen.sort(key=lambda r: (r.action is action, r.index))
    return chosen


def find_decided(region: Match, rules: Sequence[Rule], default: Action, want: Callable[[Action], bool],
                 budget: int = CUBE_BUDGET) -> tuple[str, Packet | None]:
    """A packet of `region` whose first-match decision's action satisfies `want`.

    ("found", packet), ("none", None) when no such packet exists, or
    ("budget", None) past the budget. Each rule whose action fits is tried
    on its own slice of the region (the rule's packets there, minus the
    earlier rules'), so nothing is partitioned that cannot answer.
    """
    region = Match(tuple(_prune(list(region.cubes))))
    if not region.cubes:
        return "none", None
    for k, rule in enumerate(rules):
        if not want(rule.action) or not meet(region, rule.match):
            continue
        mine = match_intersect(region, rule.match)
        rest = subtract(mine, (e.match for e in rules[:k] if meet(mine, e.match)), budget)
        if rest is None:
            return "budget", None
        if rest.cubes:
            return "found", point(rest)
    if want(default):
        rest = subtract(region, (r.match for r in rules if meet(region, r.match)), budget)
        if rest is None:
            return "budget", None
        if rest.cubes:
            return "found", point(rest)
    return "none", None


def _within(small: IntervalSet, big: IntervalSet) -> bool:
    j = 0
    for lo, hi in small:
        while j < len(big) and big[j][1] < lo:
            j += 1
        if j == len(big) or big[j][0] > lo or big[j][1] < hi:
            return False
    return True


def covers(big: Match, small: Match) -> bool:
    """True when some cube of `big` holds each cube of `small` whole (a quick, sufficient subset test)."""
    return all(any(_within(s.src, b.src) and _within(s.dst, b.dst) and _within(s.proto, b.proto)
                   and _within(s.dport, b.dport) for b in big.cubes) for s in small.cubes if not s.is_empty())


_UNPORTED = complement(tuple((p, p) for p in PORTED_PROTOCOLS), PROTO_MAX)


def holds(big: Match, small: Match, budget: int = CUBE_BUDGET) -> bool | None:
    """Is every well-formed packet of `small` in `big`? None past the budget.

    The answer of uncovered_point(small, (big,)) (none: True, found: False),
    decided for one cube in another by comparing fields, since this is asked
    for every overlapping pair: its ported protocols need the addresses and
    ports inside, its other protocols (port 0 only) the addresses and port 0.
    """
    if len(big.cubes) != 1 or len(small.cubes) != 1 or budget < len(_FIELDS):
        status, _ = uncovered_point(small, (big,), budget)  # one cube in one cube: at most 4 splits
        return None if status == "budget" else status == "none"
    t, m = big.cubes[0], small.cubes[0]
    if cube_point(m) is None:
        return True
    if t.is_empty() or not (_within(m.src, t.src) and _within(m.dst, t.dst)):
        return False
    for p in PORTED_PROTOCOLS:
        if contains(m.proto, p) and not (contains(t.proto, p) and _within(m.dport, t.dport)):
            return False
    unported = intersect(m.proto, _UNPORTED)
    return not (unported and contains(m.dport, 0) and not (_within(unported, t.proto) and contains(t.dport, 0)))


def samples(match: Match, limit: int = 6) -> list[Packet]:
    """A few well-formed packets spread over the match (corners and recognisable hosts),
    to try before any exhaustive work: one of them is often the witness needed."""
    found: list[Packet] = []
    for cube in match.cubes:
        first = cube_point(cube)
        if first is None:
            continue
        found.append(first)
        src_hi, dst_hi, port_hi = cube.src[-1][1], cube.dst[-1][1], cube.dport[-1][1]
        ported = first.proto in PORTED_PROTOCOLS
        for p in (Packet(src_hi, dst_hi, first.proto, 0, port_hi if ported else 0),
                  Packet(first.src, dst_hi, first.proto, 0, first.dport),
                  Packet(src_hi, first.dst, first.proto, 0, port_hi if ported else 0)):
            if cube.matches(p) and p not in found:
                found.append(p)
        if len(found) >= limit:
            break
    return found[:limit]


_FIELDS = ("src", "dst", "proto", "dport")
_MAXIMA = {"src": ADDR_MAX, "dst": ADDR_MAX, "proto": PROTO_MAX, "dport": PORT_MAX}


def _cube_within(small: Cube, big: Cube) -> bool:
    return (_within(small.src, big.src) and _within(small.dst, big.dst) and _within(small.proto, big.proto)
            and _within(small.dport, big.dport))


def uncovered_point(region: Match, cuts: Iterable[Match], budget: int = CUBE_BUDGET,
                    accept: Callable[[Cube], Packet | None] | None = None) -> tuple[str, Packet | None]:
    """A well-formed packet of `region` that no cut holds: ("found", packet),
    ("none", None) when the cuts cover the region, ("budget", None) past `budget` splits.

    Depth first: a cube is split only along a cut that meets it partly, and
    each branch keeps only the cuts that still meet it, so a packet is often
    found after a few splits and a covered region is proved without ever
    listing its fragments. `accept(cube)`, when given, is asked at each
    uncovered cube for the packet to return (None: keep looking).
    """
    cut_cubes = [c for m in cuts for c in m.cubes if not c.is_empty()]
    boxes = _hulls(cut_cubes) if len(cut_cubes) >= _SCAN else None
    everything = list(range(len(cut_cubes)))
    stack = [(r, everything) for r in reversed(region.cubes) if not r.is_empty()]
    splits = 0
    while stack:
        r, ids = stack.pop()
        if boxes is not None and len(ids) >= _SCAN:  # the cuts whose boxes meet r's, in order
            ids = [ids[k] for k in _near(boxes[ids], _hull(r)).tolist()]
        ids = [i for i in ids if cubes_meet(r, cut_cubes[i])]
        cs = [cut_cubes[i] for i in ids]
        if not cs:
            found = accept(r) if accept is not None else cube_point(r)
            if found is not None:
                return "found", found
            continue
        if any(_cube_within(r, c) for c in cs):
            continue
        splits += 1
        if splits > budget:
            return "budget", None
        c = cs[0]
        for name in _FIELDS:
            mine, theirs = getattr(r, name), getattr(c, name)
            if not _within(mine, theirs):
                outside, inside = _split(mine, theirs, _MAXIMA[name])
                stack.append((_replace(r, name, outside), ids))
                stack.append((_replace(r, name, inside), ids))
                break
    return "none", None


def _replace(cube: Cube, name: str, value: IntervalSet) -> Cube:
    return Cube(value if name == "src" else cube.src, value if name == "dst" else cube.dst,
                value if name == "proto" else cube.proto, value if name == "dport" else cube.dport)
