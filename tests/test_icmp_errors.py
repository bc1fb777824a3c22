"""ICMP errors about sealed flows: the reference rule, the verifier's account of
it against enumeration, and the compiled data plane against the reference.

docs/language.md ("ICMP errors"): an error is sealed when its own decision is
`seal`, dropped when the packet it quotes is sealed, else decided as itself.
"""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import HealthCheck, given, settings

from sealnet.compiler.build import build_object
from sealnet.compiler.icmp_errors import decide_icmp_error, error_about, silenced_seal_rules
from sealnet.compiler.ir import PROTO_ICMP, Action, Packet
from sealnet.compiler.semantics import decide
from sealnet.compiler.solving import Session
from sealnet.contracts import abi
from sealnet.contracts.libbpf import BpfObject
from packets import ETH, icmp_error, tcp, udp
from policies import compile_ok
from test_verify_property import PACKETS, UNIVERSE, small_policies

POLICY = '''policy "icmp" version 1
domain a { tee tdx; nodes 198.18.0.0/30 }
domain b { tee tdx; nodes 198.18.0.4/31 }
rule ab: seal udp from a to b port 7000
rule icmp_back: allow plaintext icmp from b to a
rule ba_ssh: seal tcp from b to a port 22
rule icmp_sealed: seal icmp from a to b
rule web: allow plaintext tcp from a to b port 80
'''


def _brute_silenced(policy) -> set[str]:
    """The seal rules with a packet they decide whose ICMP error the policy allows
    in clear and the data plane therefore drops."""
    out = set()
    for q in PACKETS:
        d = decide(policy, q)
        error = decide_icmp_error(policy, error_about(q), q)
        if d.action is Action.SEAL and error.dropped_for_quote and error.own.action is Action.ALLOW:
            out.add(d.rule_name)
    return out - {"default"}


def test_the_reference_rule() -> None:
    policy = compile_ok(POLICY)
    a, b = int(ipaddress.IPv4Address("198.18.0.1")), int(ipaddress.IPv4Address("198.18.0.4"))
    sealed_udp, plain_tcp, sealed_ssh = Packet(a, b, 17, 0, 7000), Packet(a, b, 6, 0, 80), Packet(b, a, 6, 0, 22)
    error = decide_icmp_error(policy, error_about(sealed_udp), sealed_udp)
    assert (error.action, error.dropped_for_quote, error.own.rule_name) == (Action.DENY, True, "icmp_back")
    assert decide_icmp_error(policy, error_about(plain_tcp), plain_tcp).action is Action.ALLOW
    # the reverse ICMP of b->a:22 is sealed by icmp_sealed: the error leaves sealed
    assert decide_icmp_error(policy, error_about(sealed_ssh), sealed_ssh).action is Action.SEAL


def test_the_verifier_names_each_seal_rule_whose_errors_are_dropped() -> None:
    policy = compile_ok(POLICY)
    silenced, undecided = silenced_seal_rules(policy, Session())
    assert undecided == []
    # ab's errors go back over `icmp_back` in clear: dropped. ba_ssh's go back
    # sealed by icmp_sealed. icmp_sealed's own flows (ICMP a->b) get errors
    # back over icmp_back too: dropped.
    assert {s.rule.name for s in silenced} == {"ab", "icmp_sealed"}
    found = next(s for s in silenced if s.rule.name == "ab")
    assert found.passed_by.rule_name == "icmp_back" and found.error.proto == PROTO_ICMP
    assert decide(policy, found.quoted).rule_name == "ab"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(small_policies())
def test_silenced_rules_agree_with_enumeration(text: str) -> None:
    policy = compile_ok(text)
    silenced, undecided = silenced_seal_rules(policy, Session(), universe=UNIVERSE)
    assert undecided == []
    assert {s.rule.name for s in silenced} == _brute_silenced(policy)


# ------------------------------------------------------------------ the compiled data plane


def _addr(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def _frame_of(q: Packet) -> bytes:
    build = {6: tcp, 17: udp}.get(q.proto)
    if build is None:
        return icmp_error(_addr(q.src), _addr(q.dst), b"\0" * 8, icmp_type=8)[:20 + 8]  # an ICMP echo-like quote
    return build(_addr(q.src), _addr(q.dst), b"quoted payload", dport=q.dport)


# What egress reports for each reference outcome, on a data plane without keys.
EXPECTED_VERDICT = {"seal": "seal_no_key_drop", "quote": "icmp_quote_drop", "deny": "deny_drop", "allow": "allow_pass"}


@pytest.mark.kernel
@pytest.mark.parametrize("text", [POLICY, POLICY.replace("rule icmp_sealed: seal icmp from a to b\n", "")])
def test_the_compiled_data_plane_decides_icmp_errors_as_the_reference(text: str) -> None:
    policy = compile_ok(text)
    obj = BpfObject.open_memory(build_object(policy), "icmp_tv")
    obj.load()
    try:
        hits = obj.map(abi.VERDICT_HITS_MAP)
        program = obj.program(abi.EGRESS_PROGRAM)
        checked = 0
        for q in PACKETS:
            if q.src == q.dst:
                continue
            e = error_about(q)
            ref = decide_icmp_error(policy, e, q)
            want = "quote" if ref.dropped_for_quote else ref.action.value
            before = {v: hits.sum_percpu_u64(abi.verdict_slot(abi.Direction.EGRESS, v).to_bytes(4, "little"))
                      for v in abi.Verdict}
            program.test_run(ETH + icmp_error(_addr(e.src), _addr(e.dst), _frame_of(q)), data_size_out=4096)
            moved = [v.label for v in abi.Verdict
                     if hits.sum_percpu_u64(abi.verdict_slot(abi.Direction.EGRESS, v).to_bytes(4, "little")) != before[v]]
            assert moved == [EXPECTED_VERDICT[want]], (q, e, ref)
            checked += 1
        assert checked > 100
    finally:
        obj.close()
