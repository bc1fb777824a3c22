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

from typing import Callable, Iterable, Sequence

from sealnet.compiler.cubes import cube_subtract, match_intersect, match_size
from sealnet.compiler.solving import DEFAULT_CUBE_BUDGET
from sealnet.compiler.ir import (ADDR_MAX, PORT_MAX, PORTED_PROTOCOLS, PROTO_MAX, Action, Cube, IntervalSet, Match, Packet,
                                 Rule, complement, contains, intersect)

# Cubes a region may fragment into before the arithmetic gives up.
CUBE_BUDGET = DEFAULT_CUBE_BUDGET

Piece = tuple[Rule | None, Match]  # (deciding rule or None for the default, its packets)


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
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i][1] < b[j][0]:
            i += 1
        elif b[j][1] < a[i][0]:
            j += 1
        else:
            return True
    return False


def cubes_meet(x: Cube, y: Cube) -> bool:
    """Do two cubes share a well-formed packet? (No cube is built: this is the hot test.)"""
    if not (_meet(x.dport, y.dport) and _meet(x.src, y.src) and _meet(x.dst, y.dst) and _meet(x.proto, y.proto)):
        return False
    for p in PORTED_PROTOCOLS:
        if contains(x.proto, p) and contains(y.proto, p):
            return True  # and the ports meet
    # only protocols without ports in common, if any: they carry dport 0
    return (contains(x.dport, 0) and contains(y.dport, 0)
            and any(p not in PORTED_PROTOCOLS for lo, hi in intersect(x.proto, y.proto)
                    for p in range(lo, min(hi, lo + 3) + 1)))


def meet(a: Match, b: Match) -> bool:
    """Do two matches share a well-formed packet?"""
    return any(cubes_meet(x, y) for x in a.cubes for y in b.cubes)


def _prune(cubes: list[Cube]) -> list[Cube]:
    return [c for c in cubes if cube_point(c) is not None]


def subtract(region: Match, cuts: Iterable[Match], budget: int = CUBE_BUDGET) -> Match | None:
    """region minus every cut (void pieces dropped), or None past the budget."""
    pieces = _prune(list(region.cubes))
    for cut in cuts:
        for c in cut.cubes:
            if not pieces:
                return Match(())
            nxt: list[Cube] = []
            for piece in pieces:
                if not cubes_meet(piece, c):
                    nxt.append(piece)
                else:
                    nxt.extend(x for x in cube_subtract(piece, c) if cube_point(x) is not None)
            pieces = nxt
            if len(pieces) > budget:
                return None
    return Match(tuple(pieces))


def partition(region: Match, rules: Sequence[Rule], budget: int = CUBE_BUDGET) -> list[Piece] | None:
    """The packets of `region` each rule decides (first match), then the rest (rule None).

    Only non-void pieces are listed. None past the budget.
    """
    pieces: list[Piece] = []
    rest = Match(tuple(_prune(list(region.cubes))))
    for rule in rules:
        if not rest.cubes:
            break
        if not meet(rest, rule.match):
            continue
        mine = match_intersect(rest, rule.match)
        pieces.append((rule, Match(tuple(_prune(list(mine.cubes))))))
        left = subtract(rest, (rule.match,), budget)
        if left is None:
            return None
        rest = left
    if rest.cubes:
        pieces.append((None, rest))
    return pieces


def minimal_cover(region: Match, candidates: Sequence[Rule], action: Action,
                  budget: int = CUBE_BUDGET) -> list[Rule] | None:
    """A set of candidates whose matches together hold every packet of `region`,
    none of them unnecessary (greedy cover, then pruned); those with an action
    other than `action` first. None when they do not cover it or past the budget.
    """
    rest = subtract(region, (), budget)
    chosen: list[Rule] = []
    pool = list(candidates)
    while rest is not None and rest.cubes:
        best, best_size = None, 0
        for rule in pool:
            size = match_size(match_intersect(rest, rule.match))
            if size > best_size or (size == best_size and size and best is not None
                                    and best.action is action and rule.action is not action):
                best, best_size = rule, size
        if best is None:
            return None
        chosen.append(best)
        pool.remove(best)
        rest = subtract(rest, (best.match,), budget)
    if rest is None:
        return None
    for rule in list(reversed(chosen)):
        others = [r.match for r in chosen if r is not rule]
        left = subtract(region, others, budget)
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
    stack = [(r, cut_cubes) for r in reversed(region.cubes) if not r.is_empty()]
    splits = 0
    while stack:
        r, cs = stack.pop()
        cs = [c for c in cs if cubes_meet(r, c)]
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
                outside = intersect(mine, complement(theirs, _MAXIMA[name]))
                inside = intersect(mine, theirs)
                stack.append((_replace(r, name, outside), cs))
                stack.append((_replace(r, name, inside), cs))
                break
    return "none", None


def _replace(cube: Cube, name: str, value: IntervalSet) -> Cube:
    return Cube(value if name == "src" else cube.src, value if name == "dst" else cube.dst,
                value if name == "proto" else cube.proto, value if name == "dport" else cube.dport)
