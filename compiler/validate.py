"""Translation validation in the kernel.

Loads the compiled data plane, runs packets through both TC programs with
BPF_PROG_TEST_RUN, and compares what the object decided (the per-CPU
`last_decision` record: deciding rule and verdict, plus the return code) with
the reference semantics (compiler/semantics.decide). Packets come from:
- Z3 models: for every rule, a packet it decides (it matches and no earlier
  rule does), when one exists;
- boundary corners of every cube: each interval's ends and the values just
  outside them, for addresses and ports, for every protocol in and next to it;
- seeded random packets, half of them biased into rule cubes.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Iterable

import z3

from sealnet.compiler.ir import (
    ADDR_MAX,
    PORT_MAX,
    PORTED_PROTOCOLS,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    Action,
    Cube,
    Packet,
    Policy,
)
from sealnet.compiler.semantics import decide
from sealnet.compiler.z3_encoding import PacketVars, match_pred
from sealnet.contracts import abi, libbpf
from sealnet.contracts.abi import PROGRAMS, RULE_NONE, Direction, Verdict

ETH_P_IP = 0x0800
SRC_PORT = 40000  # sport is not part of any match; a fixed ephemeral value

# Expected verdict slot per action and direction when the object has no seal path.
_EXPECTED_VERDICT = {
    (Action.ALLOW, Direction.EGRESS): Verdict.ALLOW_PASS,
    (Action.ALLOW, Direction.INGRESS): Verdict.ALLOW_PASS,
    (Action.DENY, Direction.EGRESS): Verdict.DENY_DROP,
    (Action.DENY, Direction.INGRESS): Verdict.DENY_DROP,
    (Action.SEAL, Direction.EGRESS): Verdict.SEAL_NO_KEY_DROP,
    (Action.SEAL, Direction.INGRESS): Verdict.SEAL_PLAINTEXT_DROP,
}


def ipv4_frame(packet: Packet, *, payload: bytes = b"sealnet", frag_off: int = 0, ihl: int = 5) -> bytes:
    """An Ethernet + IPv4 frame carrying this model packet (ports only for TCP/UDP)."""
    if packet.proto == PROTO_TCP:
        l4 = struct.pack("!HHIIBBHHH", packet.sport, packet.dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0)
    elif packet.proto == PROTO_UDP:
        l4 = struct.pack("!HHHH", packet.sport, packet.dport, 8 + len(payload), 0)
    elif packet.proto == PROTO_ICMP:
        l4 = struct.pack("!BBHHH", 8, 0, 0, 1, 1)  # echo request
    else:
        l4 = b""
    options = b"\x01" * ((ihl - 5) * 4)  # NOP options
    total = ihl * 4 + len(l4) + len(payload)
    ip = struct.pack(
        "!BBHHHBBHII",
        (4 << 4) | ihl, 0, total, 1, frag_off, 64, packet.proto, 0, packet.src, packet.dst,
    )
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", ETH_P_IP)
    return eth + ip + options + l4 + payload


@dataclass(frozen=True)
class Observation:
    retval: int
    rule: int | None  # None: the default decided; RULE_NONE: unclassified
    verdict: str


@dataclass(frozen=True)
class Mismatch:
    packet: Packet
    program: str
    expected_rule: str
    expected_verdict: str
    observed_rule: str
    observed_verdict: str
    retval: int

    def __str__(self) -> str:
        return (
            f"{self.program}: {self.packet}: expected {self.expected_rule} ({self.expected_verdict}),"
            f" object decided {self.observed_rule} ({self.observed_verdict}, retval {self.retval})"
        )


@dataclass
class ValidationReport:
    policy: str
    packets: int = 0
    z3_witnesses: int = 0
    rules_without_witness: list[str] = field(default_factory=list)  # shadowed: no packet decides them
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        head = (
            f"translation validation of {self.policy!r}: {self.packets} test runs"
            f" ({self.z3_witnesses} Z3 witnesses), {len(self.mismatches)} mismatches"
        )
        return "\n".join([head] + [f"  {m}" for m in self.mismatches[:20]])

    def to_json(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "ok": self.ok,
            "packets": self.packets,
            "z3_witnesses": self.z3_witnesses,
            "rules_without_witness": self.rules_without_witness,
            "mismatches": [
                {
                    "packet": m.packet.to_json(),
                    "program": m.program,
                    "expected_rule": m.expected_rule,
                    "expected_verdict": m.expected_verdict,
                    "observed_rule": m.observed_rule,
                    "observed_verdict": m.observed_verdict,
                    "retval": m.retval,
                }
                for m in self.mismatches
            ],
        }


# ---------------------------------------------------------------- packets


def _corners(intervals: Iterable[tuple[int, int]], maximum: int, limit: int = 3) -> set[int]:
    out: set[int] = set()
    for lo, hi in list(intervals)[:limit]:
        for v in (lo - 1, lo, lo + 1, hi - 1, hi, hi + 1):
            if 0 <= v <= maximum:
                out.add(v)
    return out


def _packet(src: int, dst: int, proto: int, dport: int) -> Packet:
    if proto in PORTED_PROTOCOLS:
        return Packet(src, dst, proto, SRC_PORT, dport)
    return Packet(src, dst, proto, 0, 0)


def boundary_packets(cube: Cube) -> list[Packet]:
    """Corners of one cube: every interval's ends and just outside, per protocol."""
    protos = {PROTO_TCP, PROTO_UDP, PROTO_ICMP} | _corners(cube.proto, 0xFF)
    srcs = sorted(_corners(cube.src, ADDR_MAX, 2))
    dsts = sorted(_corners(cube.dst, ADDR_MAX, 2))
    ports = sorted(_corners(cube.dport, PORT_MAX, 2) | {0})
    out: list[Packet] = []
    for i, src in enumerate(srcs):
        dst = dsts[i % len(dsts)]
        for proto in sorted(protos):
            for dport in ports if proto in PORTED_PROTOCOLS else [0]:
                out.append(_packet(src, dst, proto, dport))
    for dst in dsts:  # every dst corner at least once, with a src inside the cube
        out.append(_packet(cube.src[0][0], dst, PROTO_TCP, cube.dport[0][0]))
    return out


def random_packets(policy: Policy, count: int, rnd: random.Random) -> list[Packet]:
    cubes = [c for r in policy.rules for c in r.match.cubes if not c.is_empty()]
    out: list[Packet] = []
    for i in range(count):
        proto = rnd.choice([PROTO_TCP, PROTO_UDP, PROTO_ICMP, rnd.randrange(256)])
        if cubes and i % 2 == 0:
            c = rnd.choice(cubes)
            lo, hi = rnd.choice(c.src)
            src = rnd.randint(lo, hi)
            lo, hi = rnd.choice(c.dst)
            dst = rnd.randint(lo, hi)
            lo, hi = rnd.choice(c.dport)
            dport = rnd.randint(lo, hi)
        else:
            src, dst, dport = rnd.randrange(ADDR_MAX + 1), rnd.randrange(ADDR_MAX + 1), rnd.randrange(PORT_MAX + 1)
        out.append(_packet(src, dst, proto, dport))
    return out


def z3_witnesses(policy: Policy, *, max_rules: int = 400, timeout_ms: int = 2000) -> tuple[list[Packet], list[str]]:
    """Per rule, a packet that rule decides (first match), from a Z3 model.

    Returns the packets and the names of rules no packet reaches (Z3 proved
    unsat); rules beyond max_rules are not attempted (large policies rely on
    the boundary and random packets).
    """
    p = PacketVars.fresh()
    solver = z3.Solver()
    solver.set("timeout", timeout_ms)
    solver.add(p.well_formed())
    packets: list[Packet] = []
    unreachable: list[str] = []
    for rule in policy.rules[:max_rules]:
        solver.push()
        matched = match_pred(p, rule.match)
        solver.add(matched)
        result = solver.check()
        if result == z3.sat:
            packets.append(p.packet(solver.model()))
        elif result == z3.unsat:
            unreachable.append(rule.name)
        solver.pop()
        # Later rules are decided only where this one does not match.
        solver.add(z3.Not(matched))
    return packets, unreachable


def validation_packets(policy: Policy, *, random_count: int = 256, seed: int = 0, max_boundary: int = 5000) -> tuple[list[Packet], int, list[str]]:
    witnesses, unreachable = z3_witnesses(policy)
    boundary: list[Packet] = []
    for rule in policy.rules:
        for cube in rule.match.cubes:
            if not cube.is_empty():
                boundary.extend(boundary_packets(cube))
    rnd = random.Random(seed)
    if len(boundary) > max_boundary:
        boundary = rnd.sample(boundary, max_boundary)
    packets = list(dict.fromkeys(witnesses + boundary + random_packets(policy, random_count, rnd)))
    return packets, len(witnesses), unreachable


# ---------------------------------------------------------------- kernel


class LoadedDatapath:
    """A loaded data-plane object and a way to read what it decided."""

    def __init__(self, object_bytes: bytes, name: str = "sealnet") -> None:
        self.obj = libbpf.BpfObject.open_memory(object_bytes, name)
        self.obj.load()
        self.last = self.obj.map(abi.LAST_DECISION_MAP)
        self.rule_hits = self.obj.map(abi.RULE_HITS_MAP)
        self.verdict_hits = self.obj.map(abi.VERDICT_HITS_MAP)

    def close(self) -> None:
        self.obj.close()

    def __enter__(self) -> "LoadedDatapath":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rule_counts(self, rule_count: int) -> list[tuple[int, int]]:
        """(egress, ingress) hits per rule index, the default last (as iptables -v)."""
        def hits(slot: int) -> int:
            return self.rule_hits.sum_percpu_u64(struct.pack("<I", slot))

        return [(hits(abi.rule_slot(Direction.EGRESS, r, rule_count)), hits(abi.rule_slot(Direction.INGRESS, r, rule_count)))
                for r in range(rule_count + 1)]

    def verdict_counts(self) -> dict[str, tuple[int, int]]:
        """(egress, ingress) frames per verdict name."""
        get = lambda slot: self.verdict_hits.sum_percpu_u64(struct.pack("<I", slot))  # noqa: E731
        return {v.label: (get(abi.verdict_slot(Direction.EGRESS, v)), get(abi.verdict_slot(Direction.INGRESS, v)))
                for v in Verdict}

    def _last(self) -> list[tuple[int, int, int]]:
        values = self.last.lookup_percpu(b"\0\0\0\0") or []
        layout = abi.LAST_DECISION
        return [(layout.read(v, "seq"), layout.read(v, "rule"), layout.read(v, "verdict")) for v in values]

    def run(self, program: str, frame: bytes, rule_count: int) -> Observation:
        before = self._last()
        result = self.obj.program(program).test_run(frame)
        after = self._last()
        changed = [a for a, b in zip(after, before) if a[0] != b[0]]
        if len(changed) != 1:
            return Observation(result.retval, RULE_NONE, f"no record ({len(changed)} CPUs changed)")
        _, rule, verdict = changed[0]
        name = Verdict(verdict).label if verdict in Verdict._value2member_map_ else f"verdict {verdict}"
        observed: int | None = None if rule == rule_count else rule
        return Observation(result.retval, observed, name)


def _rule_label(policy: Policy, rule: int | None) -> str:
    if rule is None:
        return "default"
    if rule == RULE_NONE:
        return "no rule"
    if 0 <= rule < len(policy.rules):
        return f"rule {policy.rules[rule].name} (#{rule})"
    return f"rule #{rule} (out of range)"


def check_packets(policy: Policy, dp: LoadedDatapath, packets: Iterable[Packet], report: ValidationReport) -> None:
    for packet in packets:
        expected = decide(policy, packet)
        frame = ipv4_frame(packet)
        for direction, program in PROGRAMS.items():
            obs = dp.run(program, frame, len(policy.rules))
            expected_verdict = _EXPECTED_VERDICT[(expected.action, direction)]
            want_verdict = expected_verdict.label
            want_ret = abi.TC_ACT_OK if expected_verdict.passes else abi.TC_ACT_SHOT
            report.packets += 1
            if obs.rule != expected.rule_index or obs.verdict != want_verdict or obs.retval != want_ret:
                report.mismatches.append(
                    Mismatch(
                        packet, program,
                        _rule_label(policy, expected.rule_index), want_verdict,
                        _rule_label(policy, obs.rule), obs.verdict, obs.retval,
                    )
                )


def validate(
    policy: Policy,
    object_bytes: bytes,
    *,
    random_count: int = 256,
    seed: int = 0,
    extra_packets: Iterable[Packet] = (),
) -> ValidationReport:
    """Run the compiled object in the kernel against the reference semantics.

    Needs root and BPF; raises sealnet.contracts.libbpf.LibbpfError when the kernel
    refuses the object.
    """
    packets, n_witness, unreachable = validation_packets(policy, random_count=random_count, seed=seed)
    report = ValidationReport(policy.name, z3_witnesses=n_witness, rules_without_witness=unreachable)
    with LoadedDatapath(object_bytes) as dp:
        check_packets(policy, dp, list(packets) + list(extra_packets), report)
    return report
