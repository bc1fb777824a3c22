"""The typed syntax tree: what the user wrote, with a source span on every node.

Nothing here is resolved or checked; `checker.py` turns it into the IR.
Items inside blocks keep source order so the formatter can reproduce them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from sealnet.compiler.ir import Span


@dataclass(frozen=True)
class Ident:
    name: str
    span: Span


@dataclass(frozen=True)
class Comment:
    text: str  # including the leading '#'
    span: Span


@dataclass(frozen=True)
class PortItem:
    lo: int
    hi: int  # == lo for a single port
    span: Span

    def __str__(self) -> str:
        return str(self.lo) if self.lo == self.hi else f"{self.lo}-{self.hi}"


@dataclass(frozen=True)
class PortSpec:
    items: tuple[PortItem, ...]
    is_set: bool  # written with braces
    span: Span

    def __str__(self) -> str:
        inner = ", ".join(str(i) for i in self.items)
        return "{" + inner + "}" if self.is_set else inner


@dataclass(frozen=True)
class EndpointAtom:
    kind: str  # "any" | "cidr" | "ref"
    text: str  # "any", "198.18.1.0/24", "lab" or "genomics.ingest"
    span: Span

    @property
    def ref_parts(self) -> tuple[str, ...]:
        return tuple(self.text.split("."))


@dataclass(frozen=True)
class Endpoint:
    negations: int  # number of leading '!'; parity decides
    atoms: tuple[EndpointAtom, ...]
    is_set: bool
    span: Span

    @property
    def negated(self) -> bool:
        return self.negations % 2 == 1

    def __str__(self) -> str:
        body = ", ".join(a.text for a in self.atoms)
        if self.is_set:
            body = "{" + body + "}"
        return "!" * self.negations + body


def match_text(proto: Ident | None, src: Endpoint, dst: Endpoint, ports: PortSpec | None) -> str:
    """`[PROTO] from SRC to DST [port PORTS]` as the formatter writes it."""
    parts = [proto.name] if proto else []
    parts += ["from", str(src), "to", str(dst)]
    if ports:
        parts += ["port", str(ports)]
    return " ".join(parts)


@dataclass(frozen=True)
class PolicyHeader:
    name: str
    version: int
    version_span: Span
    span: Span


@dataclass(frozen=True)
class TeeAttr:
    kind: Ident
    span: Span


@dataclass(frozen=True)
class NodesAttr:
    cidrs: tuple[Ident, ...]  # text of each CIDR with its span
    span: Span


@dataclass(frozen=True)
class MeasurementAttr:
    value: str  # without quotes
    value_span: Span
    span: Span


@dataclass(frozen=True)
class ControlAttr:
    address: Ident
    port: int
    port_span: Span
    span: Span


DomainAttr = Union[TeeAttr, NodesAttr, MeasurementAttr, ControlAttr]


@dataclass(frozen=True)
class DomainDecl:
    name: Ident
    attrs: tuple[DomainAttr, ...]
    span: Span


@dataclass(frozen=True)
class StageDecl:
    name: Ident
    domain: Ident
    ports: PortSpec | None
    span: Span


@dataclass(frozen=True)
class FlowDecl:
    src: Ident
    dst: Ident
    proto: Ident | None
    span: Span


WorkflowItem = Union[StageDecl, FlowDecl]


@dataclass(frozen=True)
class WorkflowDecl:
    name: Ident
    items: tuple[WorkflowItem, ...]
    span: Span


@dataclass(frozen=True)
class RuleDecl:
    name: Ident
    action: Ident
    plaintext: bool
    proto: Ident | None
    src: Endpoint
    dst: Endpoint
    ports: PortSpec | None
    span: Span

    def match_text(self) -> str:
        return match_text(self.proto, self.src, self.dst, self.ports)


@dataclass(frozen=True)
class DefaultDecl:
    action: Ident
    span: Span


@dataclass(frozen=True)
class CipherDecl:
    suite: Ident  # the suite's name, e.g. chacha20-poly1305
    span: Span


@dataclass(frozen=True)
class AssertDecl:
    kind: Ident
    proto: Ident | None
    src: Endpoint
    dst: Endpoint
    ports: PortSpec | None
    span: Span

    def match_text(self) -> str:
        return match_text(self.proto, self.src, self.dst, self.ports)


Statement = Union[PolicyHeader, DomainDecl, WorkflowDecl, RuleDecl, DefaultDecl, CipherDecl, AssertDecl]


@dataclass(frozen=True)
class PolicyFile:
    file: str
    statements: tuple[Statement, ...]
    comments: tuple[Comment, ...] = field(default=())
