"""Semantic checks: every code, and the IR the checker builds."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealnet.compiler.checker import _plain_prefix
from sealnet.compiler.ir import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Action, Packet
from sealnet.compiler.semantics import decide

from policies import DOMAINS, HEADER, codes, compile_ok

IP = lambda s: int(ipaddress.IPv4Address(s))  # noqa: E731
M = "sha384:" + "ab" * 48


@pytest.mark.parametrize("body, expected", [
    ("rule r: allow from a to nowhere\n", ["E101"]),
    ("rule r: allow from a to b\nrule r: deny from a to b\n", ["W202", "E102"]),
    ("domain a { tee tdx; nodes 198.18.7.0/24 }\n", ["E102"]),
    ("workflow w { s: nowhere port 1 }\n", ["E103"]),
    ("domain d { tee tdx; nodes 198.18.1.128/25 }\n", ["E104"]),
    ("domain d { tee tdx; nodes 198.18.300.0/24 }\n", ["E105"]),
    ("domain d { tee tdx; nodes 198.18.5.0/33 }\n", ["E105"]),
    ("rule r: deny tcp from a to b port 70000\n", ["E106"]),
    ("rule r: deny tcp from a to b port 90-80\n", ["E107"]),
    ("domain d { tee sgx; nodes 198.18.5.0/24 }\n", ["E108"]),
    ('domain d { tee tdx; nodes 198.18.5.0/24; measurement "sha384:12" }\n', ["E109"]),
    ('policy "again" version 2\n', ["E110"]),
    ("domain d { tee tdx; tee sev-snp; nodes 198.18.5.0/24 }\n", ["E112"]),
    ("default deny\ndefault allow\n", ["E114"]),
    ("workflow w { s: a port 1\n s -> t tcp }\n", ["E115"]),
    ("rule r: deny icmp from a to b port 7\n", ["E116"]),
    ("rule tcp_: deny from a to b\n", []),
    ("workflow w { any: a }\n", ["E117"]),
    ("domain d { nodes 198.18.5.0/24 }\n", ["E118"]),
    ("rule r: deny from a to b\nrule s: deny from a to b\n", ["W201"]),
    ("rule r: allow tcp from a to b port 80\n", ["W202"]),
    ("rule r: allow plaintext tcp from a to b port 80\n", []),
    ("rule r: allow from a to a\n", []),
    ("domain d { tee tdx; nodes 198.18.5.9/24 }\n", ["W203"]),
    ("domain d { tee tdx }\n", ["W204"]),
    ("domain d { tee tdx; nodes 198.18.5.0/24; control 198.18.5.1:0 }\n", ["E106"]),
    ("domain d { tee tdx; nodes 198.18.5.0/24; control 198.18.5.0/24:80 }\n", ["E105"]),
])
def test_codes(body: str, expected: list[str]) -> None:
    assert codes(HEADER + DOMAINS + body) == expected


def test_missing_header_and_version_range() -> None:
    assert codes(DOMAINS) == ["E110"]
    assert codes('policy "p" version 4294967296\n') == ["E113"]


def test_keyword_as_name_is_rejected() -> None:
    assert "E117" in codes(HEADER + "rule domain: deny from any to any\n")


def test_codes_are_reported_with_spans_and_hints() -> None:
    from sealnet.compiler.frontend import compile_text

    text = HEADER + DOMAINS + "rule r: allow from a to bb\n"
    _, (diag,) = compile_text(text, "t.policy")
    line = text.split("\n")[diag.span.line - 1]
    assert line[diag.span.column - 1:diag.span.end_column - 1] == "bb"
    assert diag.hint == "did you mean `b`?"


def test_rule_expansion_and_decisions() -> None:
    policy = compile_ok(HEADER + DOMAINS + (
        "workflow w { s: a port 7000\n t: b port {7001, 8000-8010}\n s -> t tcp }\n"
        "rule to_t: seal from a to t\n"
        "rule local: allow from a to a\n"
        "rule not_c: deny udp from any to !c port 53\n"
        "default allow\n"))
    seal, local, not_c = policy.rules
    # a stage destination means its domain's nodes, its ports, and so tcp/udp only
    assert seal.match.matches(Packet(IP("198.18.1.5"), IP("198.18.2.5"), PROTO_TCP, 1, 8005))
    assert seal.match.matches(Packet(IP("198.18.1.5"), IP("198.18.2.5"), PROTO_UDP, 1, 7001))
    assert not seal.match.matches(Packet(IP("198.18.1.5"), IP("198.18.2.5"), PROTO_TCP, 1, 7002))
    assert not seal.match.matches(Packet(IP("198.18.1.5"), IP("198.18.2.5"), PROTO_ICMP))
    assert not_c.match.matches(Packet(IP("10.0.0.1"), IP("198.18.2.1"), PROTO_UDP, 5, 53))
    assert not not_c.match.matches(Packet(IP("10.0.0.1"), IP("198.18.3.1"), PROTO_UDP, 5, 53))
    d = decide(policy, Packet(IP("198.18.1.1"), IP("198.18.1.2"), PROTO_ICMP))
    assert (d.action, d.rule_name) == (Action.ALLOW, "local")
    d = decide(policy, Packet(IP("198.18.3.1"), IP("198.18.1.2"), PROTO_ICMP))
    assert (d.action, d.rule_name) == (Action.ALLOW, "default")
    flow = policy.workflows[0].flows[0]
    assert flow.match.matches(Packet(IP("198.18.1.5"), IP("198.18.2.5"), PROTO_TCP, 1, 7001))
    assert not flow.match.matches(Packet(IP("198.18.1.5"), IP("198.18.2.5"), PROTO_UDP, 1, 7001))


def test_negated_stage_destination_is_exact() -> None:
    # not (b's nodes and port 0-10 over tcp/udp): includes icmp to b's nodes
    policy = compile_ok(HEADER + DOMAINS + "workflow w { t: b port 0-10 }\nrule r: deny from a to !t\n")
    (rule,) = policy.rules
    b_host = IP("198.18.2.9")
    assert rule.match.matches(Packet(IP("198.18.1.1"), b_host, PROTO_ICMP, 0, 0))
    assert rule.match.matches(Packet(IP("198.18.1.1"), b_host, PROTO_TCP, 1, 11))
    assert not rule.match.matches(Packet(IP("198.18.1.1"), b_host, PROTO_TCP, 1, 10))
    assert rule.match.matches(Packet(IP("198.18.1.1"), IP("198.18.3.1"), PROTO_TCP, 1, 10))


def test_domains_ids_and_default() -> None:
    policy = compile_ok(HEADER + DOMAINS + f'domain d {{ tee tdx; nodes 198.18.5.0/24; measurement "{M}"; control 198.18.5.1:7443 }}\n')
    assert [(d.id, d.name) for d in policy.domains] == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    assert policy.domains[3].measurements == (M,) and policy.domains[3].control_plane == "198.18.5.1:7443"
    assert policy.default is Action.DENY and policy.default_span is None
    assert policy.domain_of(IP("198.18.5.200")).name == "d" and policy.domain_of(IP("198.19.0.1")) is None


_OCTETS = [0, 1, 9, 10, 99, 100, 199, 200, 249, 250, 255, 256, 300]


@settings(max_examples=3000, deadline=None, database=None)
@given(st.lists(st.sampled_from(_OCTETS) | st.integers(0, 255), min_size=4, max_size=4),
       st.sampled_from(["", "/0", "/8", "/22", "/24", "/26", "/31", "/32", "/33", "/024", "/08"]) | st.integers(0, 40).map(lambda b: f"/{b}"),
       st.booleans())
def test_plain_prefix_is_ipaddress_without_a_word(octets: list[int], bits: str, zero_pad: bool) -> None:
    """The checker's quick CIDR reading takes only what ipaddress reads the same way with no diagnostic."""
    text = ".".join(("0" + str(o)) if zero_pad and i == 1 else str(o) for i, o in enumerate(octets)) + bits
    quick = _plain_prefix(text)
    if quick is None:
        return
    net = ipaddress.IPv4Network(text, strict=False)
    assert net.network_address == ipaddress.IPv4Address(text.split("/")[0])  # no host bits: no warning
    assert quick == (int(net.network_address), int(net.broadcast_address))
