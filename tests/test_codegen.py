"""Decision tables and the clang build, without the kernel.

Cost: ~5 s (hypothesis 150 policies x 300 packets against the reference; two clang builds).
"""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, given, settings

from sealnet.compiler.build import SOURCE_NAME, build_object, compile_c, find_clang
from sealnet.compiler.codegen import render
from sealnet.contracts.errors import UserError
from sealnet.compiler.ir import ADDR_MAX, PORT_MAX, Packet
from sealnet.compiler.semantics import decide
from sealnet.compiler.tables import build_tables
from sealnet.compiler.validate import boundary_packets, random_packets
from policies import DOMAINS, HEADER, compile_ok
from strategies import policies


def _expected(policy, packet: Packet) -> int:
    index = decide(policy, packet).rule_index
    return len(policy.rules) if index is None else index


def _probe_packets(policy, seed: int) -> list[Packet]:
    packets = random_packets(policy, 150, random.Random(seed))
    for rule in policy.rules:
        for cube in rule.match.cubes:
            if not cube.is_empty():
                packets.extend(boundary_packets(cube))
    return packets


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_tables_decide_like_the_reference(text: str) -> None:
    policy = compile_ok(text)
    tables = build_tables(policy)
    for packet in _probe_packets(policy, 1):
        assert tables.decide(packet) == _expected(policy, packet), packet


@settings(max_examples=60, deadline=None)
@given(policies())
def test_fragment_decision_only_when_port_independent(text: str) -> None:
    """decide_any_port answers only when every dport gets the same rule."""
    policy = compile_ok(text)
    tables = build_tables(policy)
    for packet in _probe_packets(policy, 2)[:200]:
        if packet.proto not in (6, 17):
            continue
        got = tables.decide_any_port(packet)
        ports = [0, 1, 22, 80, 443, 7000, 7001, 7002, 65534, PORT_MAX] + [
            p for c in (cu for r in policy.rules for cu in r.match.cubes) for iv in c.dport for p in iv
        ]
        rules = {_expected(policy, Packet(packet.src, packet.dst, packet.proto, 1, p)) for p in ports}
        if got is not None:
            assert rules == {got}


def test_equivalent_addresses_share_a_class() -> None:
    policy = compile_ok(HEADER + DOMAINS + "rule r: allow tcp from a to b port 80\nrule s: deny from c to any\n")
    tables = build_tables(policy)
    # Outside any rule address, a, c: three source classes (a before/after the gap merge).
    assert tables.src.count == 3
    assert tables.decide(Packet(0xC6120105, 0xC6120205, 6, 1, 80)) == 0
    assert tables.decide(Packet(0xC6120105, 0xC6120205, 17, 1, 80)) == 2  # default
    assert tables.decide(Packet(0xC6120305, ADDR_MAX, 1)) == 1


def test_missing_clang_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEALNET_CLANG", "clang-does-not-exist")
    with pytest.raises(UserError, match="clang-19"):
        find_clang()


def test_clang_is_15_or_newer() -> None:
    assert find_clang().version[0] >= 15


def test_same_policy_twice_in_different_directories_is_byte_identical(tmp_path) -> None:
    policy = compile_ok(HEADER + DOMAINS + "rule r: seal tcp from a to b port 7000-7100\ndefault deny\n")
    first = build_object(policy)
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        second = build_object(policy)
    finally:
        os.chdir(cwd)
    assert first == second
    assert b"sealnet-build-" not in first  # no temp directory name leaks into debug info
    assert SOURCE_NAME.encode() in first


def test_policy_change_changes_the_object() -> None:
    a = compile_ok(HEADER + DOMAINS + "rule r: allow tcp from a to b port 80\n")
    b = compile_ok(HEADER + DOMAINS + "rule r: allow tcp from a to b port 81\n")
    assert build_object(a) != build_object(b)


def test_rendered_c_has_no_per_rule_code() -> None:
    """The rule count changes table sizes, never the code: no if-chain per rule."""
    small = compile_ok(HEADER + DOMAINS + "rule r: allow tcp from a to b port 80\n")
    big = compile_ok(
        HEADER + DOMAINS + "".join(f"rule r{i}: allow tcp from a to b port {1000 + i}\n" for i in range(200))
    )
    strip = lambda c: "\n".join(l for l in c.splitlines() if not l.startswith(("const volatile", "#define N_", "/* sealnet data plane")))  # noqa: E731
    assert strip(render(small)) == strip(render(big))


def test_clang_failure_is_reported_with_its_log() -> None:
    with pytest.raises(RuntimeError, match="clang failed"):
        compile_c("this is not C;\n")


@settings(max_examples=40, deadline=None)
@given(policies())
def test_domain_table_matches_the_ir(text: str) -> None:
    policy = compile_ok(text)
    tables = build_tables(policy)
    probes = {0, ADDR_MAX} | {v for d in policy.domains for lo, hi in d.addresses for v in (lo - 1, lo, hi, hi + 1)}
    for addr in probes:
        if 0 <= addr <= ADDR_MAX:
            d = policy.domain_of(addr)
            assert tables.domain_of(addr) == (0 if d is None else d.id), hex(addr)


def _host_and_domain_rules(hosts: int) -> str:
    """Domain-wide port rules a -> b, with host rules from a's nodes before, among and after them."""
    lines = [HEADER + DOMAINS]
    for i in range(hosts):
        lines.append(f"rule h{i}: deny tcp from 198.18.1.{i + 1} to b port {1000 + i}")
        lines.append(f"rule w{i}: allow plaintext tcp from a to b port {1000 + 2 * i}-{1001 + 2 * i}")
    lines.append("rule late: allow plaintext udp from 198.18.1.7 to b\n")
    return "\n".join(lines)


def test_host_rules_do_not_copy_the_domain_list() -> None:
    """Each host rule adds its own few entries, not a copy of the domain pair's list."""
    hosts = 60
    policy = compile_ok(_host_and_domain_rules(hosts))
    tables = build_tables(policy)
    assert tables.src.count > hosts  # every host is its own class...
    assert len(tables.entry_key) < 8 * (2 * hosts)  # ...yet entries grow linearly with the rules
    ports = [0, 999, 1000, 1001, 1002, 1059, 1060, 1118, 1119, 1120, PORT_MAX]
    for host in (0, 1, 7, 30, 60, 61, 255):
        for proto in (6, 17, 1):
            for port in ports:
                packet = Packet(0xC6120100 + host, 0xC6120205, proto, 1, port if proto != 1 else 0)
                assert tables.decide(packet) == _expected(policy, packet), packet


def test_prefix_index_window_holds_the_interval() -> None:
    """The bucket's window always contains the interval a full search finds, at every edge."""
    import bisect

    policy = compile_ok(_host_and_domain_rules(40) + "rule far: deny from 10.0.0.0/8 to 203.0.113.9\n")
    tables = build_tables(policy)
    for classes in (tables.src, tables.dst):
        starts, index = classes.starts, classes.index
        probes = {0, ADDR_MAX, index.base, max(index.base - 1, 0)}
        for s in starts:
            probes |= {max(s - 1, 0), s, min(s + 1, ADDR_MAX)}
        for b in range(index.buckets + 2):
            probes.add(min(index.base + (b << index.shift), ADDR_MAX))
        for addr in probes:
            lo, n = index.window(addr)
            want = bisect.bisect_right(starts, addr) - 1
            assert lo <= want < lo + n <= len(starts), (addr, lo, n, want)
