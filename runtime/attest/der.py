"""Just enough DER to read vendor certificate extensions (Intel's SGX extension, AMD's VCEK TCB)."""

from __future__ import annotations

from dataclasses import dataclass

from sealnet.runtime.attest.evidence import EvidenceError

SEQUENCE, INTEGER, OCTET_STRING, OID, ENUMERATED = 0x30, 0x02, 0x04, 0x06, 0x0A
MAX_DEPTH = 8


@dataclass(frozen=True)
class Node:
    tag: int
    value: bytes
    children: tuple[Node, ...] = ()

    def integer(self) -> int:
        if self.tag not in (INTEGER, ENUMERATED):
            raise EvidenceError(f"DER: expected an INTEGER, found tag 0x{self.tag:02x}")
        return int.from_bytes(self.value, "big", signed=True)

    def oid(self) -> str:
        if self.tag != OID or not self.value:
            raise EvidenceError("DER: expected an OBJECT IDENTIFIER")
        parts = [min(self.value[0] // 40, 2), self.value[0] - 40 * min(self.value[0] // 40, 2)]
        n = 0
        for byte in self.value[1:]:
            n = (n << 7) | (byte & 0x7F)
            if not byte & 0x80:
                parts.append(n)
                n = 0
        return ".".join(map(str, parts))


def _one(data: bytes, off: int, depth: int) -> tuple[Node, int]:
    if depth > MAX_DEPTH:
        raise EvidenceError("DER: nested too deeply")
    if off + 2 > len(data):
        raise EvidenceError("DER: truncated")
    tag, length = data[off], data[off + 1]
    off += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or off + n > len(data):
            raise EvidenceError("DER: bad length")
        length = int.from_bytes(data[off:off + n], "big")
        off += n
    if off + length > len(data):
        raise EvidenceError("DER: value runs past the end")
    value = data[off:off + length]
    children = tuple(parse_all(value, depth + 1)) if tag & 0x20 else ()
    return Node(tag, value, children), off + length


def parse_all(data: bytes, depth: int = 0) -> list[Node]:
    out, off = [], 0
    while off < len(data):
        node, off = _one(data, off, depth)
        out.append(node)
    return out


def parse(data: bytes) -> Node:
    node, end = _one(data, 0, 0)
    if end != len(data):
        raise EvidenceError("DER: trailing bytes")
    return node


def oid_map(node: Node) -> dict[str, Node]:
    """A SEQUENCE of SEQUENCE { OID, value }: {oid: value}."""
    out = {}
    for item in node.children:
        if item.tag != SEQUENCE or len(item.children) != 2:
            raise EvidenceError("DER: expected SEQUENCE { OID, value }")
        out[item.children[0].oid()] = item.children[1]
    return out
