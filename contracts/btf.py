"""Reading a BPF object's BTF: the C types as the compiler laid them out.

Used to hold `sealnet.contracts.abi` against the compiled data plane (every
enum value, struct size and member offset) and, by the measurement, to walk
the type section. BTF format: the kernel's Documentation/bpf/btf.rst.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from elftools.elf.elffile import ELFFile

BTF_MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
TYPE_HEADER = struct.Struct("<III")  # name_off, info, size or type

# BTF kinds (linux/btf.h)
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)

# kind -> (bytes after the 12-byte header: fixed, per member, offsets of name references within a member)
KIND_EXTRA = {
    INT: (4, 0, ()), PTR: (0, 0, ()), ARRAY: (12, 0, ()), STRUCT: (0, 12, (0,)), UNION: (0, 12, (0,)),
    ENUM: (0, 8, (0,)), FWD: (0, 0, ()), TYPEDEF: (0, 0, ()), VOLATILE: (0, 0, ()), CONST: (0, 0, ()),
    RESTRICT: (0, 0, ()), FUNC: (0, 0, ()), FUNC_PROTO: (0, 8, (0,)), VAR: (4, 0, ()), DATASEC: (0, 12, ()),
    FLOAT: (0, 0, ()), DECL_TAG: (4, 0, ()), TYPE_TAG: (0, 0, ()), ENUM64: (0, 12, (0,)),
}


class BtfError(ValueError):
    """Not BTF this reader understands."""


@dataclass
class BtfType:
    id: int
    kind: int
    name: str
    size_or_type: int
    kind_flag: bool
    extra: bytes  # the fixed part after the header
    members: list[tuple[str, int, int]] = field(default_factory=list)  # (name, type or value, offset word)


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # bytes
    size: int  # bytes
    type_name: str  # the resolved type's kind and name, e.g. "struct bpf_crypto_ctx *"


class Btf:
    """The types of one BTF blob, by id, with lookups by name."""

    def __init__(self, data: bytes) -> None:
        if len(data) < HEADER.size:
            raise BtfError("BTF too short")
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(data)
        if magic != BTF_MAGIC or version != 1:
            raise BtfError("not BTF version 1")
        types = data[hdr_len + type_off:hdr_len + type_off + type_len]
        self._strings = data[hdr_len + str_off:hdr_len + str_off + str_len]
        self.types: list[BtfType | None] = [None]  # id 0 is void
        pos = 0
        while pos < len(types):
            name_off, info, size_or_type = TYPE_HEADER.unpack_from(types, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind not in KIND_EXTRA:
                raise BtfError(f"unknown BTF kind {kind}")
            fixed, per_member, _ = KIND_EXTRA[kind]
            pos += TYPE_HEADER.size
            t = BtfType(len(self.types), kind, self.string(name_off), size_or_type, bool(info >> 31),
                        types[pos:pos + fixed])
            pos += fixed
            for _ in range(vlen if per_member else 0):
                if kind == DATASEC:  # (variable's type id, offset in the section, size)
                    var_id, offset, _size = struct.unpack_from("<III", types, pos)
                    t.members.append(("", var_id, offset))
                elif kind == ENUM64:  # (name, value low 32 bits, high 32 bits)
                    a, lo, hi = struct.unpack_from("<III", types, pos)
                    t.members.append((self.string(a), lo | hi << 32, 0))
                elif per_member == 12:  # struct/union: (name, type, bit offset)
                    a, b, c = struct.unpack_from("<III", types, pos)
                    t.members.append((self.string(a), b, c))
                else:  # enum: (name, value); func_proto: (name, type)
                    a, b = struct.unpack_from("<Ii", types, pos)
                    t.members.append((self.string(a), b, 0))
                pos += per_member
            self.types.append(t)

    @classmethod
    def from_object(cls, object_bytes: bytes) -> Btf:
        elf = ELFFile(io.BytesIO(object_bytes))
        section = elf.get_section_by_name(".BTF")
        if section is None:
            raise BtfError("the object has no .BTF section (build with -g)")
        return cls(section.data())

    def string(self, offset: int) -> str:
        end = self._strings.index(b"\0", offset)
        return self._strings[offset:end].decode()

    def named(self, kind: int, name: str) -> BtfType:
        found = [t for t in self.types if t is not None and t.kind == kind and t.name == name]
        if not found:
            raise KeyError(f"no {_KIND_NAMES.get(kind, kind)} {name!r} in the BTF")
        return found[0]

    def resolve(self, type_id: int) -> BtfType | None:
        """Through typedefs and qualifiers to the type that has a size."""
        t = self.types[type_id]
        while t is not None and t.kind in MODIFIERS:
            t = self.types[t.size_or_type]
        return t

    def sizeof(self, type_id: int) -> int:
        t = self.resolve(type_id)
        if t is None:
            raise BtfError("sizeof(void)")
        if t.kind == PTR:
            return 8
        if t.kind == ARRAY:
            elem, _index, count = struct.unpack("<III", t.extra)
            return self.sizeof(elem) * count
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return t.size_or_type
        raise BtfError(f"no size for BTF kind {t.kind}")

    def type_name(self, type_id: int) -> str:
        t = self.resolve(type_id)
        if t is None:
            return "void"
        if t.kind == PTR:
            return self.type_name(t.size_or_type) + " *"
        if t.kind == ARRAY:
            elem, _index, count = struct.unpack("<III", t.extra)
            return f"{self.type_name(elem)}[{count}]"
        return f"{_KIND_NAMES.get(t.kind, '')} {t.name}".strip()

    def is_kptr(self, type_id: int) -> bool:
        """A pointer tagged `__kptr` (BTF: PTR -> TYPE_TAG "kptr"/"kptr_untrusted" -> ...)."""
        t = self.types[type_id]
        while t is not None and t.kind in (TYPEDEF, VOLATILE, CONST, RESTRICT):
            t = self.types[t.size_or_type]
        if t is None or t.kind != PTR:
            return False
        tag = self.types[t.size_or_type]
        return tag is not None and tag.kind == TYPE_TAG and tag.name.startswith("kptr")

    def struct(self, name: str) -> tuple[int, list[Member]]:
        """(size, members) of `struct name`, offsets and sizes in bytes."""
        t = self.named(STRUCT, name)
        members = []
        for member_name, type_id, offset in t.members:
            bits = offset & 0xFFFFFF if t.kind_flag else offset
            if bits % 8:
                raise BtfError(f"struct {name}.{member_name} is a bitfield")
            members.append(Member(member_name, bits // 8, self.sizeof(type_id),
                                  "kptr" if self.is_kptr(type_id) else self.type_name(type_id)))
        return t.size_or_type, members

    def enum(self, name: str) -> dict[str, int]:
        t = self.named(ENUM, name)
        return {member_name: value for member_name, value, _ in t.members}

    def section_variables(self, section: str) -> list[str]:
        """Names of the variables a DATASEC (".maps", ".rodata", ...) holds."""
        t = self.named(DATASEC, section)
        out = []
        for _, var_id, _offset in t.members:
            var = self.types[var_id]
            if var is not None:
                out.append(var.name)
        return out

    def function_args(self, name: str) -> list[tuple[str, str]]:
        """(name, type) of a function's parameters (a BPF program's context)."""
        func = self.named(FUNC, name)
        proto = self.types[func.size_or_type]
        assert proto is not None and proto.kind == FUNC_PROTO
        return [(arg_name, self.type_name(type_id)) for arg_name, type_id, _ in proto.members]


_KIND_NAMES = {STRUCT: "struct", UNION: "union", ENUM: "enum", ENUM64: "enum", INT: "", FLOAT: "",
               DATASEC: "section", FUNC: "function", VAR: "variable", FWD: "struct"}
