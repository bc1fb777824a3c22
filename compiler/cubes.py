"""Exact set algebra on matches (unions of cubes), used by the checker and verifier."""

from __future__ import annotations

from sealnet.compiler.ir import FULL_ADDR, FULL_PORT, FULL_PROTO, Cube, IntervalSet, Match, complement, intersect

_FIELDS = ("src", "dst", "proto", "dport")
_MAXIMA = {"src": FULL_ADDR[0][1], "dst": FULL_ADDR[0][1], "proto": FULL_PROTO[0][1], "dport": FULL_PORT[0][1]}

EVERYTHING = Match((Cube(),))
NOTHING = Match(())


def _meet(a: IntervalSet, b: IntervalSet, full: IntervalSet) -> IntervalSet:
    # Most fields of a rule's cubes are unrestricted: skip the merge for them.
    if b == full or a is b:
        return a
    if a == full:
        return b
    return intersect(a, b)


def cube_intersect(a: Cube, b: Cube) -> Cube | None:
    c = Cube(_meet(a.src, b.src, FULL_ADDR), _meet(a.dst, b.dst, FULL_ADDR),
             _meet(a.proto, b.proto, FULL_PROTO), _meet(a.dport, b.dport, FULL_PORT))
    return None if c.is_empty() else c


def cube_subtract(a: Cube, b: Cube) -> list[Cube]:
    """a \\ b as disjoint cubes (at most one per field)."""
    if cube_intersect(a, b) is None:
        return [a]
    out: list[Cube] = []
    rest = a
    for name in _FIELDS:
        mine: IntervalSet = getattr(rest, name)
        theirs: IntervalSet = getattr(b, name)
        outside = intersect(mine, complement(theirs, _MAXIMA[name]))
        if outside:
            out.append(_with(rest, name, outside))
        inside = intersect(mine, theirs)
        rest = _with(rest, name, inside)
    return out


def _with(cube: Cube, name: str, value: IntervalSet) -> Cube:
    fields = {f: getattr(cube, f) for f in _FIELDS}
    fields[name] = value
    return Cube(**fields)


def match_intersect(a: Match, b: Match) -> Match:
    cubes = [c for x in a.cubes for y in b.cubes if (c := cube_intersect(x, y)) is not None]
    return Match(tuple(cubes))


def match_union(*matches: Match) -> Match:
    return Match(tuple(c for m in matches for c in m.cubes))


def match_subtract(a: Match, b: Match) -> Match:
    pieces = list(a.cubes)
    for cut in b.cubes:
        pieces = [p for piece in pieces for p in cube_subtract(piece, cut)]
        if not pieces:
            break
    return Match(tuple(pieces))


def match_complement(a: Match) -> Match:
    return match_subtract(EVERYTHING, a)


def match_is_empty(a: Match) -> bool:
    return all(c.is_empty() for c in a.cubes)


def match_size(a: Match) -> int:
    """Number of (src, dst, proto, dport) points; cubes must be disjoint."""
    total = 0
    for c in a.cubes:
        n = 1
        for name in _FIELDS:
            n *= sum(hi - lo + 1 for lo, hi in getattr(c, name))
        total += n
    return total
