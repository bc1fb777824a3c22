"""The bundle measurement: SHA-384 over what the kernel executes and is configured with.

Covered, in section-name order, each as a tagged, length-prefixed field:
every executable section's bytes and its relocations (offset, type and the
*name* of the symbol, never its index), the data sections the programs read
(.rodata*, .data*, and .bss* by size), the license, the map definitions
(.maps and the .BTF that describes them), and finally the manifest's
canonical bytes. Not covered: debug info (.debug_*, .BTF.ext line info),
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
    return (name.startswith(".rodata") or name.startswith(".data") or name in ("license", ".maps", ".BTF"))


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
            elif _is_measured_data(name):
                _field(h, b"data", name.encode(), section.data())
    except Exception as exc:  # pyelftools raises many kinds on malformed input
        raise MeasureError(f"object is not a readable BPF ELF file: {exc}") from None
    _field(h, b"manifest", manifest_bytes)
    return PREFIX + h.hexdigest()
