"""The bundle measurement: SHA-384 over what the kernel executes and is configured with.

Covered, in section-name order, each as a tagged, length-prefixed field:
every executable section's bytes and its relocations (offset, type and the
*name* of the symbol, never its index), the data sections the programs read
(.rodata*, .data*, and .bss* by size), the license, the map definitions
(.maps, and the BTF types that describe them with every name written out),
and finally the manifest's canonical bytes. Not covered: debug info (.debug_*, .BTF.ext line info),
the symbol and string tables themselves, build paths and timestamps. Two
builds of one policy with one toolchain therefore measure the same.
"""

from __future__ import annotations

import hashlib
import io
import struct

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from sealnet.contracts.btf import KIND_EXTRA

DOMAIN = b"sealnet-measurement-v1"
PREFIX = "sha384:"


class MeasureError(Exception):
    """The object is not an ELF file this measurement understands."""


def _field(h: "hashlib._Hash", tag: bytes, *parts: bytes) -> None:
    h.update(struct.pack(">Q", len(tag)) + tag)
    h.update(struct.pack(">Q", len(parts)))
    for part in parts:
        h.update(struct.pack(">Q", len(part)) + part)


def _is_measured_data(name: str) -> bool:
    return name.startswith(".rodata") or name.startswith(".data") or name in ("license", ".maps")



def canonical_btf(data: bytes) -> bytes:
    """BTF types with every name written out, the string table itself left behind.

    The string table also holds source paths for line info, so measuring it
    raw would make the measurement depend on the build directory.
    """
    magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
    if magic != 0xEB9F or version != 1:
        raise ValueError("not BTF version 1")
    types = data[hdr_len + type_off:hdr_len + type_off + type_len]
    strings = data[hdr_len + str_off:hdr_len + str_off + str_len]

    def name(off: int) -> bytes:
        end = strings.index(b"\0", off)
        return strings[off:end]

    out = bytearray()
    pos = 0
    while pos < len(types):
        name_off, info, size_or_type = struct.unpack_from("<III", types, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        fixed, per_member, name_slots = KIND_EXTRA[kind]
        out += struct.pack(">I", len(name(name_off))) + name(name_off) + struct.pack(">II", info, size_or_type)
        pos += 12
        out += types[pos:pos + fixed]
        pos += fixed
        for _ in range(vlen if per_member else 0):
            member = bytearray(types[pos:pos + per_member])
            for slot in name_slots:
                (ref,) = struct.unpack_from("<I", member, slot)
                text = name(ref)
                member[slot:slot + 4] = b"\0\0\0\0"
                out += struct.pack(">I", len(text)) + text
            out += member
            pos += per_member
    return bytes(out)


def measure(object_bytes: bytes, manifest_bytes: bytes) -> str:
    """`sha384:<hex>` of the canonical encoding of object and manifest."""
    h = hashlib.sha384()
    _field(h, DOMAIN)
    try:
        elf = ELFFile(io.BytesIO(object_bytes))
        sections = sorted(elf.iter_sections(), key=lambda s: s.name)
        relocations = {s.name: s for s in elf.iter_sections() if isinstance(s, RelocationSection)}
        symtab = elf.get_section_by_name(".symtab")
        for section in sections:
            name = section.name
            if section["sh_flags"] & SH_FLAGS.SHF_EXECINSTR:
                if section["sh_size"] == 0:
                    continue
                _field(h, b"program", name.encode(), section.data())
                rel = relocations.get(".rel" + name) or relocations.get(".rela" + name)
                for r in sorted(rel.iter_relocations(), key=lambda r: r["r_offset"]) if rel else ():
                    sym = symtab.get_symbol(r["r_info_sym"]) if symtab else None
                    sym_name = sym.name if sym is not None else ""
                    if sym is not None and not sym_name and sym["st_shndx"] not in ("SHN_UNDEF", "SHN_ABS"):
                        sym_name = "section:" + elf.get_section(sym["st_shndx"]).name
                    _field(h, b"relocation", name.encode(), struct.pack(">QQ", r["r_offset"], r["r_info_type"]),
                           sym_name.encode())
            elif name.startswith(".bss"):
                _field(h, b"bss", name.encode(), struct.pack(">Q", section["sh_size"]))
            elif name == ".BTF":  # map definitions and kptr/kfunc types, without paths
                _field(h, b"btf", canonical_btf(section.data()))
            elif _is_measured_data(name):
                _field(h, b"data", name.encode(), section.data())
    except Exception as exc:  # pyelftools raises many kinds on malformed input
        raise MeasureError(f"object is not a readable BPF ELF file: {exc}") from None
    _field(h, b"manifest", manifest_bytes)
    return PREFIX + h.hexdigest()
