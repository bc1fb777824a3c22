"""diff's regions against brute force, for the changes a review brings: a flipped
default, rules removed, inserted, moved and flipped (test_verify_property.py has
two unrelated random policies and the universe these share).

Each change is checked twice: quantified over the small universe (every point
of each region changes as reported, no change outside them, packet counts),
and over every packet (no universe: the sweep's whole-box shortcuts run),
checked on the universe's packets. Then the sweep against the solver alone
(--cube-budget 0) on a generated policy of a few hundred rules.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealnet.compiler.diff import diff
from sealnet.compiler.semantics import decide
from sealnet.compiler.solving import Budget
from policies import compile_ok
from test_verify_property import ENDPOINTS, HEAD, PACKETS, PORT_CLAUSES, UNIVERSE

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
ACTIONS = ["deny", "allow plaintext", "seal"]


@st.composite
def rule_body(draw) -> str:
    proto = draw(st.sampled_from(["", "tcp ", "udp ", "icmp "]))
    port = "" if proto == "icmp " else draw(st.sampled_from(PORT_CLAUSES))
    return (f"{draw(st.sampled_from(ACTIONS))} {proto}from {draw(st.sampled_from(ENDPOINTS))} "
            f"to {draw(st.sampled_from(ENDPOINTS))}{port}")


@st.composite
def reviewed(draw, flip_default: bool | None = None) -> tuple[str, str]:
    """An old policy and the new one after a few edits of a review."""
    rules = [f"rule r{i}: {draw(rule_body())}" for i in range(draw(st.integers(1, 8)))]
    default = draw(st.sampled_from(["deny", "allow", "seal"]))
    old = HEAD + "\n".join(rules + [f"default {default}"]) + "\n"
    new_rules = list(rules)
    for k in range(draw(st.integers(0 if flip_default else 1, 5))):
        op = draw(st.sampled_from(["remove", "insert", "move", "flip"]))
        if op == "remove" and len(new_rules) > 1:
            del new_rules[draw(st.integers(0, len(new_rules) - 1))]
        elif op == "insert":
            new_rules.insert(draw(st.integers(0, len(new_rules))), f"rule n{k}: {draw(rule_body())}")
        elif op == "move":
            rule = new_rules.pop(draw(st.integers(0, len(new_rules) - 1)))
            new_rules.insert(draw(st.integers(0, len(new_rules))), rule)
        else:
            i = draw(st.integers(0, len(new_rules) - 1))
            name, body = new_rules[i].split(": ", 1)
            action = next(a for a in ACTIONS if body.startswith(a))
            other = draw(st.sampled_from([a for a in ACTIONS if a != action]))
            new_rules[i] = f"{name}: {other}{body[len(action):]}"
    flip = draw(st.booleans()) if flip_default is None else flip_default
    new_default = draw(st.sampled_from([d for d in ("deny", "allow", "seal") if d != default])) if flip else default
    return old, HEAD + "\n".join(new_rules + [f"default {new_default}"]) + "\n"


def check_exact(old_text: str, new_text: str) -> None:
    old, new = compile_ok(old_text), compile_ok(new_text)
    for universe in (UNIVERSE, None):
        result = diff(old, new, universe=universe)
        assert not result.unknown and not result.truncated
        for pkt in PACKETS:
            a, b = decide(old, pkt), decide(new, pkt)
            holders = [r for r in result.regions if r.cube.matches(pkt)]
            if a.action is b.action:
                assert not holders, f"{pkt} is unchanged but lies in a reported region"
                continue
            assert len(holders) == 1, f"{pkt} changes and lies in {len(holders)} regions"
            r = holders[0]
            assert r.exact and (r.old_rule, r.new_rule) == (a.rule_name, b.rule_name)
            assert (r.old_action, r.new_action) == (a.action, b.action)
        for r in result.regions:
            assert decide(old, r.witness).action is r.old_action and decide(new, r.witness).action is r.new_action
            if universe is not None:
                inside = [pkt for pkt in PACKETS if r.cube.matches(pkt)]
                assert r.witness in inside and r.packets == len(inside)


@SETTINGS
@given(reviewed(flip_default=True))
def test_a_flipped_default_changes_exactly_what_no_rule_matches(pair: tuple[str, str]) -> None:
    check_exact(*pair)


@SETTINGS
@given(reviewed())
def test_removed_inserted_moved_and_flipped_rules_change_exactly_what_brute_force_says(pair) -> None:
    check_exact(*pair)


def test_only_the_default_flipped_is_every_packet_no_rule_matches() -> None:
    rules = ("rule r0: seal tcp from a to b port 80\n"
             "rule r1: allow plaintext from c to any\n")
    old = compile_ok(HEAD + rules + "default deny\n")
    new = compile_ok(HEAD + rules + "default allow\n")
    result = diff(old, new, universe=UNIVERSE)
    unmatched = [pkt for pkt in PACKETS if not any(r.match.matches(pkt) for r in old.rules)]
    assert {(r.old_rule, r.new_rule) for r in result.regions} == {("default", "default")}
    assert sum(r.packets for r in result.regions) == len(unmatched)


def test_a_moved_rule_is_a_change_only_where_it_now_decides_first() -> None:
    """r1 moved above r0: only r0's packets that r1 also matches change."""
    old = compile_ok(HEAD + "rule r0: seal tcp from a to b\nrule r1: deny tcp from any to b port 22\ndefault deny\n")
    new = compile_ok(HEAD + "rule r1: deny tcp from any to b port 22\nrule r0: seal tcp from a to b\ndefault deny\n")
    (region,) = diff(old, new).regions
    assert (region.old_rule, region.new_rule, region.old_action.value, region.new_action.value) == (
        "r0", "r1", "seal", "deny")
    assert region.packets == 4 * 2  # a (/30) to b (/31), tcp port 22


def _pairs(result) -> set[tuple[str, str]]:
    return {(d.old_rule, d.new_rule) for d in result.differences}


def test_the_sweep_agrees_with_the_solver_on_a_generated_policy() -> None:
    """The same (old rule, new rule) pairs from the sweep and from Z3 alone, on a
    300-rule realistic mix after a review's edits (benchmarks/)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_verify import edited
    from gen_mix import generate

    text = generate(300)
    old, new = compile_ok(text), compile_ok(edited(text, ops=6))
    swept = diff(old, new)
    solved = diff(old, new, budget=Budget(cubes=0))
    assert swept.status == "different" and all(r.exact for r in swept.regions)
    assert not solved.unknown and not solved.truncated and not any(r.exact for r in solved.regions)
    assert _pairs(swept) == _pairs(solved)


def test_past_the_budget_an_undecided_bucket_stays_unknown() -> None:
    """No cube budget sends each bucket that needs a cut to Z3; no time for it leaves it unknown, never equivalent."""
    old = compile_ok(HEAD + "rule r0: seal tcp from a to b\ndefault deny\n")
    new = compile_ok(HEAD + "rule r0: deny tcp from a to b\ndefault deny\n")
    result = diff(old, new, budget=Budget(total=1e-9, cubes=0))
    assert result.status == "unknown" and result.unknown and not result.regions
    flipped = compile_ok(HEAD + "rule r0: seal tcp from a to b\ndefault allow\n")
    result = diff(old, flipped, budget=Budget(total=1e-9, cubes=0))
    assert any(reason.startswith("a -> b") for reason in result.unknown)  # the bucket with the rule
    assert result.regions and all(r.exact for r in result.regions)  # the others need no cut: exact as they are
