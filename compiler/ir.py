"""The checked intermediate representation: the typed boundary after `check`.

Every later stage (verifier, code generator, bundle, runtime) reads only this
module's types. Matches are normalised to unions of *cubes*: a cube is a
product of per-field unions of inclusive integer intervals. That one shape
expresses CIDRs, negations (`!x`), port ranges and lists and protocol sets
exactly, and maps directly to Z3 bit-vector constraints, to generated range
tables in eBPF, and to brute-force enumeration in tests.

Addresses are plain integers plus the address family's width, so IPv6 is a
wider field, not a different model.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

from sealnet.contracts.manifest import DEFAULT_CIPHER_SUITE

ADDR_BITS = 32  # IPv4 first; IPv6 later widens address fields to 128
ADDR_MAX = (1 << ADDR_BITS) - 1
PORT_MAX = 0xFFFF
PROTO_MAX = 0xFF

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_NUMBERS: dict[str, int] = {"icmp": PROTO_ICMP, "tcp": PROTO_TCP, "udp": PROTO_UDP}
PROTO_NAMES: dict[int, str] = {v: k for k, v in PROTO_NUMBERS.items()}
# A `port` clause only makes sense for protocols that carry ports; a rule
# with a port clause and no protocol therefore means tcp or udp.
PORTED_PROTOCOLS: tuple[int, ...] = (PROTO_TCP, PROTO_UDP)


@dataclass(frozen=True, order=True)
class Span:
    """A source range, 1-based lines and columns, end exclusive."""

    file: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Action(str, enum.Enum):
    DENY = "deny"
    ALLOW = "allow"
    SEAL = "seal"

    @property
    def passes(self) -> bool:
        return self is not Action.DENY


class TeeKind(str, enum.Enum):
    NONE = "none"
    SEV_SNP = "sev-snp"
    TDX = "tdx"
    SIM = "sim"


class AssertKind(str, enum.Enum):
    SEALED = "sealed"
    NEVER = "never"
    REACHABLE = "reachable"


Interval = tuple[int, int]  # inclusive bounds
IntervalSet = tuple[Interval, ...]  # sorted, disjoint, non-adjacent


def normalize(intervals: Iterable[Interval]) -> IntervalSet:
    """Sort and merge overlapping or adjacent inclusive intervals."""
    merged: list[list[int]] = []
    for lo, hi in sorted(intervals):
        if lo > hi:
            continue
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((lo, hi) for lo, hi in merged)


def complement(intervals: IntervalSet, maximum: int) -> IntervalSet:
    out: list[Interval] = []
    nxt = 0
    for lo, hi in intervals:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= maximum:
        out.append((nxt, maximum))
    return tuple(out)


def intersect(a: IntervalSet, b: IntervalSet) -> IntervalSet:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def contains(intervals: IntervalSet, value: int) -> bool:
    return any(lo <= value <= hi for lo, hi in intervals)


def prefix_interval(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Interval:
    return (int(net.network_address), int(net.broadcast_address))


def interval_prefixes(intervals: IntervalSet) -> list[ipaddress.IPv4Network]:
    """The smallest CIDR list covering exactly these address intervals."""
    nets: list[ipaddress.IPv4Network] = []
    for lo, hi in intervals:
        nets.extend(
            ipaddress.summarize_address_range(ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi))
        )
    return nets


FULL_ADDR: IntervalSet = ((0, ADDR_MAX),)
FULL_PORT: IntervalSet = ((0, PORT_MAX),)
FULL_PROTO: IntervalSet = ((0, PROTO_MAX),)


@dataclass(frozen=True)
class Cube:
    """Packets whose every field lies in the field's interval set.

    Source ports are never restricted by the language, so they are not a
    field here; they still exist in the packet model and in witnesses.
    """

    src: IntervalSet = FULL_ADDR
    dst: IntervalSet = FULL_ADDR
    proto: IntervalSet = FULL_PROTO
    dport: IntervalSet = FULL_PORT

    def is_empty(self) -> bool:
        return not (self.src and self.dst and self.proto and self.dport)

    def matches(self, packet: "Packet") -> bool:
        return (
            contains(self.src, packet.src)
            and contains(self.dst, packet.dst)
            and contains(self.proto, packet.proto)
            and contains(self.dport, packet.dport)
        )


@dataclass(frozen=True)
class Match:
    """A union of cubes (empty union matches nothing)."""

    cubes: tuple[Cube, ...]

    def matches(self, packet: "Packet") -> bool:
        return any(c.matches(packet) for c in self.cubes)


@dataclass(frozen=True)
class Packet:
    """The packet model: (src IP, dst IP, protocol, src port, dst port).

    Protocols without ports (ICMP, anything but TCP/UDP) carry sport = dport = 0.
    """

    src: int
    dst: int
    proto: int
    sport: int = 0
    dport: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "src": str(ipaddress.IPv4Address(self.src)),
            "dst": str(ipaddress.IPv4Address(self.dst)),
            "proto": PROTO_NAMES.get(self.proto, f"proto {self.proto}"),
            "sport": self.sport,
            "dport": self.dport,
        }

    def __str__(self) -> str:
        j = self.to_json()
        if self.proto in PORTED_PROTOCOLS:
            return f"{j['proto']} {j['src']}:{self.sport} -> {j['dst']}:{self.dport}"
        return f"{j['proto']} {j['src']} -> {j['dst']}"


@dataclass(frozen=True)
class Domain:
    id: int  # 1-based, dense, in declaration order; 0 means "no domain"
    name: str
    tee: TeeKind
    prefixes: tuple[ipaddress.IPv4Network, ...]
    measurements: tuple[str, ...]  # "sha384:<96 hex>"
    control_plane: str | None  # "host:port" of the domain's control plane
    span: Span

    @cached_property
    def addresses(self) -> IntervalSet:
        return normalize(prefix_interval(p) for p in self.prefixes)


@dataclass(frozen=True)
class Stage:
    workflow: str
    name: str
    domain: str
    ports: IntervalSet
    span: Span

    @property
    def qualified_name(self) -> str:
        return f"{self.workflow}.{self.name}"


@dataclass(frozen=True)
class Flow:
    workflow: str
    src: str  # stage name within the workflow
    dst: str
    proto: int | None  # None: any protocol
    span: Span
    match: Match  # packets of this flow: src stage nodes -> dst stage nodes and port


@dataclass(frozen=True)
class Workflow:
    name: str
    stages: tuple[Stage, ...]
    flows: tuple[Flow, ...]
    span: Span


@dataclass(frozen=True)
class Rule:
    index: int  # 0-based position in the ordered rule list
    name: str
    action: Action
    match: Match
    span: Span
    plaintext_ok: bool = False  # `allow plaintext`: cross-domain plaintext was intended
    source_text: str = ""  # the rule's match as written, for tables and messages


@dataclass(frozen=True)
class Assertion:
    kind: AssertKind
    match: Match
    span: Span
    source_text: str = ""


@dataclass(frozen=True)
class Policy:
    name: str
    version: int
    file: str
    domains: tuple[Domain, ...]
    workflows: tuple[Workflow, ...]
    rules: tuple[Rule, ...]
    default: Action
    default_span: Span | None
    assertions: tuple[Assertion, ...]
    span: Span
    peers: tuple[str, ...] = field(default=())  # federation peers (domain names)
    cipher: str = DEFAULT_CIPHER_SUITE  # the AEAD suite of every sealed packet (`cipher NAME`)
    cipher_span: Span | None = None

    def domain(self, name: str) -> Domain:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(name)

    def domain_of(self, addr: int) -> Domain | None:
        """The domain whose nodes include this address (node CIDRs never overlap)."""
        for d in self.domains:
            if contains(d.addresses, addr):
                return d
        return None


def cube_product(
    src: Sequence[Interval] = FULL_ADDR,
    dst: Sequence[Interval] = FULL_ADDR,
    proto: Sequence[Interval] = FULL_PROTO,
    dport: Sequence[Interval] = FULL_PORT,
) -> Cube:
    return Cube(normalize(src), normalize(dst), normalize(proto), normalize(dport))
