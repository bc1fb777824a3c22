"""The fast cube arithmetic (firstmatch.py, regions.RuleBoxes) against the plain algorithms it replaced.

Each reference below is the straightforward loop the verifier used before
(one Python comparison per piece and cut): the fast versions must give the
same pieces in the same order, the same blocking sets and the same answers,
since findings and witnesses are built from them. Cubes are drawn over small
ranges that still hit the well-formedness corner (protocols without ports
carry port 0): protocols around tcp (6) and udp (17), ports around 0.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from sealnet.compiler import firstmatch as fm
from sealnet.compiler.cubes import cube_intersect, cube_subtract, match_intersect, match_size
from sealnet.compiler.ir import Action, Cube, Match, Rule, Span, normalize
from sealnet.compiler.regions import RuleBoxes

SPAN = Span("t", 1, 1, 1, 1)


def intervals(lo: int, hi: int):
    pair = st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(lambda p: (min(p), max(p)))
    return st.lists(pair, min_size=1, max_size=3).map(normalize)


cubes = st.builds(Cube, src=intervals(0, 15), dst=intervals(0, 15), proto=intervals(0, 20), dport=intervals(0, 6))
matches = st.lists(cubes, min_size=1, max_size=2).map(lambda cs: Match(tuple(cs)))


def rules_of(ms: list[Match], actions: list[Action]) -> list[Rule]:
    return [Rule(i, f"r{i}", actions[i % len(actions)], m, SPAN) for i, m in enumerate(ms)]


# -- the plain algorithms, as they were -------------------------------------------------
def plain_subtract(region: Match, cuts, budget: int = 10**6) -> Match | None:
    pieces = fm._prune(list(region.cubes))
    for cut in cuts:
        for c in cut.cubes:
            if not pieces:
                return Match(())
            nxt = []
            for piece in pieces:
                if not fm.cubes_meet(piece, c):
                    nxt.append(piece)
                else:
                    nxt.extend(x for x in cube_subtract(piece, c) if fm.cube_point(x) is not None)
            pieces = nxt
            if len(pieces) > budget:
                return None
    return Match(tuple(pieces))


def plain_partition(region: Match, rules, budget: int = 10**6):
    pieces = []
    rest = Match(tuple(fm._prune(list(region.cubes))))
    for rule in rules:
        if not rest.cubes:
            break
        if not fm.meet(rest, rule.match):
            continue
        mine = match_intersect(rest, rule.match)
        pieces.append((rule, Match(tuple(fm._prune(list(mine.cubes))))))
        left = plain_subtract(rest, (rule.match,), budget)
        if left is None:
            return None
        rest = left
    if rest.cubes:
        pieces.append((None, rest))
    return pieces


def plain_minimal_cover(region: Match, candidates, action: Action, budget: int = 10**6):
    rest = plain_subtract(region, (), budget)
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
        rest = plain_subtract(rest, (best.match,), budget)
    if rest is None:
        return None
    for rule in list(reversed(chosen)):
        left = plain_subtract(region, [r.match for r in chosen if r is not rule], budget)
        if left is None:
            return None
        if not left.cubes:
            chosen.remove(rule)
    chosen.sort(key=lambda r: (r.action is action, r.index))
    return chosen


# -- the comparisons ------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(cubes, cubes)
def test_cube_cut_and_meet_are_the_plain_ones(a, b):
    assert fm._cube_and(a, b) == cube_intersect(a, b)
    if fm.cubes_meet(a, b):
        assert fm._cube_cut(a, b) == cube_subtract(a, b)


@settings(max_examples=200, deadline=None)
@given(matches, matches)
def test_holds_is_uncovered_point(big, small):
    status, _ = fm.uncovered_point(small, (big,))
    assert fm.holds(big, small) is (status == "none")


@settings(max_examples=200, deadline=None)
@given(matches, st.lists(matches, min_size=0, max_size=40))
def test_rule_boxes_meet_exactly(query, ms):
    boxes = RuleBoxes(ms)
    found = boxes.meeting(query, np.arange(len(ms), dtype=np.int64))
    assert found is not None
    hit, wide = found
    assert not len(wide)
    assert hit.tolist() == [i for i, m in enumerate(ms) if fm.meet(query, m)]


@settings(max_examples=80, deadline=None)
@given(matches, st.lists(matches, min_size=0, max_size=40), st.sampled_from([24, 2]))
def test_subtract_and_partition_are_the_plain_ones(region, ms, scan):
    """Many cuts: the array path (past _SCAN pieces) and the plain scan give the same pieces, in order."""
    old, fm._SCAN = fm._SCAN, scan
    try:
        rules = rules_of(ms, [Action.DENY, Action.SEAL])
        assert fm.subtract(region, ms) == plain_subtract(region, ms)
        assert fm.subtract(region, ms, 5) == plain_subtract(region, ms, 5)
        assert fm.partition(region, rules) == plain_partition(region, rules)
        assert fm.partition(region, rules, 5) == plain_partition(region, rules, 5)
    finally:
        fm._SCAN = old


@settings(max_examples=80, deadline=None)
@given(matches, st.lists(matches, min_size=1, max_size=25), st.sampled_from([24, 2]))
def test_minimal_cover_is_the_plain_one(region, ms, scan):
    old, fm._SCAN = fm._SCAN, scan
    try:
        rules = rules_of(ms, [Action.DENY, Action.ALLOW, Action.SEAL])
        pieces = plain_partition(region, rules)
        deciders = [r for r, _ in pieces if r is not None]
        for action in (Action.DENY, Action.SEAL):
            assert fm.minimal_cover(region, deciders, action) == plain_minimal_cover(region, deciders, action)
            assert fm.minimal_cover(region, rules, action) == plain_minimal_cover(region, rules, action)
    finally:
        fm._SCAN = old


@settings(max_examples=80, deadline=None)
@given(matches, st.lists(matches, min_size=0, max_size=40), st.sampled_from([24, 2]))
def test_uncovered_point_prefilter_keeps_the_answer(region, ms, scan):
    old, fm._SCAN = fm._SCAN, scan
    try:
        fast = fm.uncovered_point(region, ms)
    finally:
        fm._SCAN = old
    fm._SCAN, old = 10**9, fm._SCAN
    try:
        assert fast == fm.uncovered_point(region, ms)
    finally:
        fm._SCAN = old
