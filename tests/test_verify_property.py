"""Every Z3 verdict against exhaustive enumeration over a space small enough to list.

The universe: source and destination in 198.18.0.0/29 (domains a = .0/30,
b = .4/31, c = .6/32, and .7 in no domain), protocols icmp/tcp/udp,
destination ports {0, 22, 80, 443}, source port 0. The verifier and diff are
told to quantify over exactly this universe.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealnet.compiler.diff import diff
from sealnet.compiler.ir import PORTED_PROTOCOLS, Action, AssertKind, Cube, Match, Packet
from sealnet.compiler.semantics import decide
from sealnet.compiler.verify import verify
from policies import compile_ok

BASE = (198 << 24) | (18 << 16)
PROTOS = (1, 6, 17)
PORTS = (0, 22, 80, 443)
UNIVERSE = Match(tuple(
    Cube(src=((BASE, BASE + 7),), dst=((BASE, BASE + 7),), proto=((p, p),), dport=tuple((d, d) for d in PORTS))
    for p in PROTOS))
PACKETS = [Packet(BASE + s, BASE + d, proto, 0, port)
           for s, d, proto, port in itertools.product(range(8), range(8), PROTOS, PORTS)
           if proto in PORTED_PROTOCOLS or port == 0]

HEAD = ('policy "u" version 1\n'
        "domain a { tee tdx; nodes 198.18.0.0/30 }\n"
        "domain b { tee tdx; nodes 198.18.0.4/31 }\n"
        "domain c { tee none; nodes 198.18.0.6/32 }\n")
ENDPOINTS = ["any", "a", "b", "c", "!a", "!{a, b}", "198.18.0.7", "198.18.0.0/29", "198.18.0.2/31", "{b, c}"]
PORT_CLAUSES = ["", " port 22", " port 80", " port {22, 443}", " port 0-80", " port 80-443"]


@st.composite
def small_policies(draw, n_max: int = 6) -> str:
    lines = []
    for i in range(draw(st.integers(1, n_max))):
        action = draw(st.sampled_from(["deny", "allow plaintext", "seal"]))
        proto = draw(st.sampled_from(["", "tcp ", "udp ", "icmp "]))
        port = "" if proto == "icmp " else draw(st.sampled_from(PORT_CLAUSES))
        lines.append(f"rule r{i}: {action} {proto}from {draw(st.sampled_from(ENDPOINTS))} "
                     f"to {draw(st.sampled_from(ENDPOINTS))}{port}")
    lines.append(f"default {draw(st.sampled_from(['deny', 'allow', 'seal']))}")
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["sealed", "never", "reachable"]))
        lines.append(f"assert {kind} from {draw(st.sampled_from(ENDPOINTS))} to {draw(st.sampled_from(ENDPOINTS))}")
    return HEAD + "\n".join(lines) + "\n"


def brute_rule_verdicts(policy) -> dict[str, str]:
    """shadowed / redundant / unreachable per rule, by enumeration."""
    verdicts: dict[str, str] = {}
    decisions = {pkt: decide(policy, pkt) for pkt in PACKETS}
    for rule in policy.rules:
        mine = [pkt for pkt in PACKETS if rule.match.matches(pkt)]
        decided = [pkt for pkt in mine if decisions[pkt].rule is rule]
        if not decided:
            if not mine:
                verdicts[rule.name] = "unreachable"
                continue
            same = any(decisions[pkt].action is rule.action for pkt in mine)
            other = any(decisions[pkt].action is not rule.action for pkt in mine)
            verdicts[rule.name] = "shadowed" if other and not same else "redundant" if same and not other else "unreachable"
            continue
        rest = policy.__class__(**{**policy.__dict__, "rules": tuple(r for r in policy.rules if r is not rule)})
        if all(decide(rest, pkt).action is rule.action for pkt in decided):
            verdicts[rule.name] = "redundant"
    return verdicts


def brute_assertions(policy) -> list[bool]:
    results = []
    for a in policy.assertions:
        actions = [decide(policy, pkt).action for pkt in PACKETS if a.match.matches(pkt)]
        if a.kind is AssertKind.SEALED:
            results.append(all(x is not Action.ALLOW for x in actions))
        elif a.kind is AssertKind.NEVER:
            results.append(all(x is Action.DENY for x in actions))
        else:
            results.append(any(x.passes for x in actions))
    return results


SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@SETTINGS
@given(small_policies())
def test_rule_anomalies_and_assertions_match_enumeration(text: str) -> None:
    policy = compile_ok(text)
    report = verify(policy, universe=UNIVERSE)
    z3_verdicts = {f.rules[0]: f.kind for f in report.findings
                   if f.kind in ("shadowed", "redundant", "unreachable")}
    assert z3_verdicts == brute_rule_verdicts(policy)
    failed = {f.span.line for f in report.findings if f.kind == "assertion-failed"}
    z3_results = [a.span.line not in failed for a in policy.assertions]
    assert z3_results == brute_assertions(policy)
    for f in report.findings:  # every witness lies in the universe
        if f.witness is not None:
            assert f.witness in PACKETS


@SETTINGS
@given(small_policies(), small_policies())
def test_diff_matches_enumeration(old_text: str, new_text: str) -> None:
    old, new = compile_ok(old_text), compile_ok(new_text)
    result = diff(old, new, universe=UNIVERSE)
    expected = set()
    for pkt in PACKETS:
        a, b = decide(old, pkt), decide(new, pkt)
        if a.action is not b.action:
            expected.add((a.rule_name, b.rule_name))
    assert {(d.old_rule, d.new_rule) for d in result.differences} == expected
    assert result.equivalent == (not expected)
    assert diff(old, old, universe=UNIVERSE).equivalent


@SETTINGS
@given(small_policies(n_max=8))
def test_blocking_sets_are_minimal_and_complete(text: str) -> None:
    """For a rule that decides nothing: the named earlier rules match all its packets (none
    missing), each is needed (none unnecessary) and decides some of them; another action first."""
    policy = compile_ok(text)
    by_name = {r.name: r for r in policy.rules}
    report = verify(policy, universe=UNIVERSE)
    for f in report.findings:
        if f.kind not in ("shadowed", "redundant", "unreachable") or len(f.rules) < 2:
            continue
        rule, blockers = by_name[f.rules[0]], [by_name[n] for n in f.rules[1:]]
        mine = [pkt for pkt in PACKETS if rule.match.matches(pkt)]
        assert mine and all(b.index < rule.index for b in blockers)
        assert all(any(b.match.matches(pkt) for b in blockers) for pkt in mine), "a blocking rule is missing"
        for b in blockers:
            others = [o for o in blockers if o is not b]
            assert not all(any(o.match.matches(pkt) for o in others) for pkt in mine), f"`{b.name}` is unnecessary"
            assert any(decide(policy, pkt).rule is b for pkt in mine), f"`{b.name}` decides none of its packets"
        if any(b.action is not rule.action for b in blockers):
            assert blockers[0].action is not rule.action
    correlated = [f.rules[0] for f in report.findings if f.kind == "correlated"]
    assert len(correlated) == len(set(correlated)), "correlated warnings are grouped per rule"


@SETTINGS
@given(small_policies(), small_policies())
def test_diff_regions_are_exact(old_text: str, new_text: str) -> None:
    """Every packet of a reported region changes as reported; no change lies outside them."""
    old, new = compile_ok(old_text), compile_ok(new_text)
    result = diff(old, new, universe=UNIVERSE)
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
        inside = [pkt for pkt in PACKETS if r.cube.matches(pkt)]
        assert r.witness in inside and r.packets == len(inside)
