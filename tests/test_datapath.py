"""The compiled data plane in the kernel (BPF_PROG_TEST_RUN): parsing, counters, fail-closed cases.

Cost: ~2 s (one clang build, one load, a few hundred test runs).
"""

from __future__ import annotations

import struct

import pytest

from sealnet.compiler.build import build_object
from sealnet.compiler.ir import Packet
from sealnet.compiler.validate import LoadedDatapath, ipv4_frame
from sealnet.contracts import abi
from sealnet.contracts.abi import EGRESS_PROGRAM, INGRESS_PROGRAM, PROGRAMS, RULE_NONE, TC_ACT_OK, TC_ACT_SHOT
from sealnet.contracts.libbpf import LibbpfError
from policies import DOMAINS, HEADER, compile_ok

pytestmark = pytest.mark.kernel

A1, A2 = 0xC6120105, 0xC6120106  # 198.18.1.5/.6 (domain a)
B1 = 0xC6120205  # 198.18.2.5 (domain b)
C1 = 0xC6120305  # 198.18.3.5 (domain c)

TEXT = HEADER + DOMAINS + (
    "rule web: allow plaintext tcp from a to b port 80\n"         # 0
    "rule secret: seal udp from a to b port 5000-5010\n"  # 1
    "rule ping: allow plaintext icmp from a to b\n"               # 2
    "rule local: allow from a to a\n"                   # 3
    "rule noc: deny from c to any\n"                    # 4
    "default deny\n"
)
N_RULES = 5


@pytest.fixture(scope="module")
def dp():
    policy = compile_ok(TEXT)
    with LoadedDatapath(build_object(policy)) as loaded:
        yield loaded


def run(dp: LoadedDatapath, frame: bytes, program: str = EGRESS_PROGRAM):
    return dp.run(program, frame, N_RULES)


@pytest.mark.parametrize("direction", list(PROGRAMS))
def test_rules_decide_and_count(dp: LoadedDatapath, direction: abi.Direction) -> None:
    program = PROGRAMS[direction]
    key = lambda rule: struct.pack("<I", abi.rule_slot(direction, rule, N_RULES))  # noqa: E731
    before = dp.rule_hits.sum_percpu_u64(key(0))
    obs = run(dp, ipv4_frame(Packet(A1, B1, 6, 40000, 80)), program)
    assert (obs.retval, obs.rule, obs.verdict) == (TC_ACT_OK, 0, "allow_pass")
    assert dp.rule_hits.sum_percpu_u64(key(0)) == before + 1
    obs = run(dp, ipv4_frame(Packet(A1, B1, 6, 40000, 81)), program)
    assert (obs.retval, obs.rule, obs.verdict) == (TC_ACT_SHOT, None, "deny_drop")  # default
    obs = run(dp, ipv4_frame(Packet(A1, A2, 17, 1, 9)), program)
    assert (obs.retval, obs.rule) == (TC_ACT_OK, 3)
    obs = run(dp, ipv4_frame(Packet(C1, A1, 1)), program)
    assert (obs.retval, obs.rule, obs.verdict) == (TC_ACT_SHOT, 4, "deny_drop")


def test_seal_without_key_fails_closed_both_ways(dp: LoadedDatapath) -> None:
    frame = ipv4_frame(Packet(A1, B1, 17, 1, 5005))
    egress = run(dp, frame, EGRESS_PROGRAM)
    assert (egress.retval, egress.rule, egress.verdict) == (TC_ACT_SHOT, 1, "seal_no_key_drop")
    ingress = run(dp, frame, INGRESS_PROGRAM)
    assert (ingress.retval, ingress.rule, ingress.verdict) == (TC_ACT_SHOT, 1, "seal_plaintext_drop")


def test_ip_options_are_skipped_by_ihl(dp: LoadedDatapath) -> None:
    for ihl in (6, 10, 15):
        obs = run(dp, ipv4_frame(Packet(A1, B1, 6, 40000, 80), ihl=ihl))
        assert (obs.retval, obs.rule) == (TC_ACT_OK, 0), ihl
        obs = run(dp, ipv4_frame(Packet(A1, B1, 6, 40000, 81), ihl=ihl))
        assert (obs.retval, obs.rule) == (TC_ACT_SHOT, None), ihl


def _malformed(dp: LoadedDatapath, frame: bytes) -> None:
    obs = run(dp, frame)
    assert (obs.retval, obs.rule, obs.verdict) == (TC_ACT_SHOT, RULE_NONE, "malformed_drop"), frame.hex()


def test_truncated_frames_drop_as_malformed(dp: LoadedDatapath) -> None:
    good = ipv4_frame(Packet(A1, B1, 6, 40000, 80))
    # BPF_PROG_TEST_RUN itself refuses an IPv4 frame shorter than Ethernet +
    # 20 bytes (EINVAL): the program never sees those. Every longer cut up to
    # the end of the TCP header must drop, never classify.
    for cut in range(14, 14 + 20):
        with pytest.raises(LibbpfError):
            run(dp, good[:cut])
    for cut in range(14 + 20, 14 + 20 + 20):
        _malformed(dp, good[:cut])
    udp = ipv4_frame(Packet(A1, B1, 17, 1, 5005), payload=b"")
    for cut in range(14 + 20, 14 + 20 + 8):
        _malformed(dp, udp[:cut])


def test_bad_ip_headers_drop_as_malformed(dp: LoadedDatapath) -> None:
    good = bytearray(ipv4_frame(Packet(A1, B1, 6, 40000, 80)))
    for ver_ihl in (0x44, 0x40, 0x41, 0x65, 0x4F):  # ihl < 5, version != 4, ihl beyond the frame
        bad = bytearray(good)
        bad[14] = ver_ihl
        _malformed(dp, bytes(bad))
    bad = bytearray(good)
    bad[16:18] = struct.pack("!H", 19)  # total length shorter than the header
    _malformed(dp, bytes(bad))
    bad[16:18] = struct.pack("!H", 30)  # shorter than IP + TCP header
    _malformed(dp, bytes(bad))


def test_non_ip_ethertypes(dp: LoadedDatapath) -> None:
    frame = bytearray(ipv4_frame(Packet(A1, B1, 6, 40000, 80)))
    for ethertype, verdict, ret in (
        (0x0806, "arp_pass", TC_ACT_OK),
        (0x86DD, "ipv6_drop", TC_ACT_SHOT),
        (0x8100, "other_l3_drop", TC_ACT_SHOT),
        (0x88CC, "other_l3_drop", TC_ACT_SHOT),
    ):
        frame[12:14] = struct.pack("!H", ethertype)
        obs = run(dp, bytes(frame))
        assert (obs.retval, obs.rule, obs.verdict) == (ret, RULE_NONE, verdict)


def test_fragments(dp: LoadedDatapath) -> None:
    # First fragment (MF, offset 0) has the TCP header: classified normally.
    obs = run(dp, ipv4_frame(Packet(A1, B1, 6, 40000, 80), frag_off=0x2000))
    assert (obs.retval, obs.rule) == (TC_ACT_OK, 0)
    # A later fragment has no ports: a->b tcp depends on the port (80 vs default): drop.
    later = ipv4_frame(Packet(A1, B1, 6, 0, 0), frag_off=0x2000 | 185)
    obs = run(dp, later)
    assert (obs.retval, obs.rule, obs.verdict) == (TC_ACT_SHOT, RULE_NONE, "fragment_drop")
    # Later fragment where every port gets the same rule: decided by that rule.
    obs = run(dp, ipv4_frame(Packet(A1, A2, 6, 0, 0), frag_off=185))
    assert (obs.retval, obs.rule) == (TC_ACT_OK, 3)
    obs = run(dp, ipv4_frame(Packet(C1, B1, 17, 0, 0), frag_off=185))
    assert (obs.retval, obs.rule) == (TC_ACT_SHOT, 4)
    # Portless protocols have ports 0 anyway: a later ICMP fragment is exact.
    obs = run(dp, ipv4_frame(Packet(A1, B1, 1), frag_off=185))
    assert (obs.retval, obs.rule) == (TC_ACT_OK, 2)


def test_verdict_counters_count_each_frame_once(dp: LoadedDatapath) -> None:
    def totals() -> int:
        return sum(dp.verdict_hits.sum_percpu_u64(struct.pack("<I", k)) for k in range(abi.verdict_slot_count()))

    before = totals()
    frames = [ipv4_frame(Packet(A1, B1, 6, 1, p)) for p in (79, 80, 81)] + [b"\x00" * 14]
    for f in frames:
        run(dp, f)
    assert totals() == before + len(frames)


def test_rule_and_verdict_counts_read_like_iptables_v(dp: LoadedDatapath) -> None:
    before = dp.rule_counts(N_RULES)
    verdicts = dp.verdict_counts()
    for _ in range(3):
        run(dp, ipv4_frame(Packet(C1, B1, 6, 1, 22)), INGRESS_PROGRAM)
    after = dp.rule_counts(N_RULES)
    assert after[4] == (before[4][0], before[4][1] + 3)
    assert [a for i, a in enumerate(after) if i != 4] == [b for i, b in enumerate(before) if i != 4]
    assert dp.verdict_counts()["deny_drop"][1] == verdicts["deny_drop"][1] + 3
