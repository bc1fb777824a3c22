"""Hold `sealnet.contracts.abi` against a compiled data plane: BTF types, maps and programs.

Everything abi.py says about the C is compared with what the compiler laid
out: every enum constant (both ways: a constant the C has and Python lacks is
drift too), every struct's size and each member's name, offset and size, the
map names, the maps' sizes against the slot formulas, and the program names.
Needs no kernel: BTF comes from the ELF, map definitions from libbpf's open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from sealnet.contracts import abi
from sealnet.contracts.btf import Btf
from sealnet.contracts.libbpf import BpfObject

# Enums and layouts that exist only in a data plane built with the sealing path.
SEAL_ONLY_ENUMS = (abi.SealSuite, abi.SealFormat, abi.SealKeySlots, abi.SealReplay)
SEAL_ONLY_LAYOUTS = ("seal_key_args", "seal_key", "seal_tx", "seal_config", "seal_hdr", "seal_way", "seal_set",
                     "seal_replay_salt", "seal_forget_args")


@dataclass(frozen=True)
class AbiFacts:
    """What is checked; the defaults are contracts/abi.py (a test passes altered copies)."""

    enums: dict[type[IntEnum], tuple[str, str]] = field(default_factory=lambda: dict(abi.C_ENUMS))
    layouts: tuple[abi.Layout, ...] = abi.LAYOUTS

    @classmethod
    def for_suite(cls, suite: abi.SealSuite) -> AbiFacts:
        """abi.py's facts for a data plane built with `suite` (struct seal_key differs)."""
        key = abi.seal_key_layout(suite)
        return cls(layouts=tuple(key if layout.name == key.name else layout for layout in abi.LAYOUTS))


def _enum_drift(btf: Btf, py_enum: type[IntEnum], c_name: str, prefix: str) -> list[str]:
    try:
        c_values = btf.enum(c_name)
    except KeyError:
        return [f"enum {c_name}: not in the object's BTF"]
    expected = {prefix + name: int(member.value) for name, member in py_enum.__members__.items()}  # aliases too
    if py_enum is abi.Verdict:
        expected["V_COUNT"] = abi.VERDICT_COUNT
    out = []
    for name in sorted(expected.keys() | c_values.keys()):
        if name not in c_values:
            out.append(f"enum {c_name}: {name} = {expected[name]} in abi.py, missing in the C")
        elif name not in expected:
            out.append(f"enum {c_name}: {name} = {c_values[name]} in the C, missing in abi.py")
        elif expected[name] != c_values[name]:
            out.append(f"enum {c_name}: {name} is {c_values[name]} in the C, {expected[name]} in abi.py")
    return out


def _layout_drift(btf: Btf, layout: abi.Layout) -> list[str]:
    try:
        size, members = btf.struct(layout.name)
    except KeyError:
        return [f"struct {layout.name}: not in the object's BTF"]
    out = []
    if size != layout.size:
        out.append(f"struct {layout.name}: {size} bytes in the C, {layout.size} in abi.py")
    c_names = [m.name for m in members]
    py_names = [f.name for f in layout.fields]
    if c_names != py_names:
        out.append(f"struct {layout.name}: members {c_names} in the C, {py_names} in abi.py")
    by_name = {m.name: m for m in members}
    for f in layout.fields:
        m = by_name.get(f.name)
        if m is None:
            continue
        if m.offset != f.offset:
            out.append(f"struct {layout.name}.{f.name}: offset {m.offset} in the C, {f.offset} in abi.py")
        if m.size != f.size:
            out.append(f"struct {layout.name}.{f.name}: {m.size} bytes in the C, {f.size} in abi.py")
    return out


def _map_drift(object_bytes: bytes, btf: Btf, sealing: bool, n_rules: int, n_domains: int,
               layouts: dict[str, abi.Layout]) -> list[str]:
    out = []
    expected_names = set(abi.DATAPATH_MAPS) | (set(abi.SEAL_MAPS) | set(abi.GUARD_MAPS) if sealing else set())
    c_names = set(btf.section_variables(".maps"))
    if c_names != expected_names:
        out.append(f"maps: {sorted(c_names)} in the C, {sorted(expected_names)} in abi.py")
    # (map, max_entries by the slot formula, value layout)
    expected = [
        (abi.RULE_HITS_MAP, abi.rule_slot_count(n_rules), None),
        (abi.VERDICT_HITS_MAP, abi.verdict_slot_count(), None),
        (abi.RULE_VERDICT_HITS_MAP, abi.rule_verdict_slot_count(n_rules), None),
        (abi.LAST_DECISION_MAP, 1, layouts.get("last_decision")),
    ]
    if sealing:
        expected += [
            (abi.SEAL_KEYS_MAP, abi.seal_key_slot_count(n_domains), layouts.get("seal_key")),
            (abi.SEAL_TX_MAP, abi.seal_pair_count(n_domains), layouts.get("seal_tx")),
            (abi.SEAL_CONFIG_MAP, 1, layouts.get("seal_config")),
            (abi.SEAL_SCRATCH_MAP, len(abi.Direction), None),
            (abi.SEAL_REPLAY_MAP, abi.SEAL_REPLAY_SETS, layouts.get("seal_set")),
            (abi.SEAL_REPLAY_FLOOR_MAP, abi.seal_replay_floor_groups(n_domains), None),
            (abi.SEAL_REPLAY_SALT_MAP, 1, layouts.get("seal_replay_salt")),
            (abi.SEAL_REPLAY_EVICTIONS_MAP, 1, None),
            (abi.GUARD_NETNS_MAP, 1, None),
        ]
    with BpfObject.open_memory(object_bytes, "sealnet_abi") as obj:
        maps = {m.name: m for m in obj.maps()}
        for name, entries, layout in expected:
            m = maps.get(name)
            if m is None:
                continue  # reported above
            if m.max_entries != entries:
                out.append(f"map {name}: {m.max_entries} entries in the C, {entries} by abi.py's slot formula")
            if name == abi.SEAL_REPLAY_FLOOR_MAP and m.value_size != 8 * abi.seal_key_slot_count(n_domains):
                out.append(f"map {name}: {m.value_size}-byte values in the C, a u64 per key slot is "
                           f"{8 * abi.seal_key_slot_count(n_domains)} by abi.py")
            if layout is not None and m.value_size != layout.size:
                out.append(f"map {name}: {m.value_size}-byte values in the C, struct {layout.name} is "
                           f"{layout.size} in abi.py")
        sections = {p.name: p.section for p in obj.programs()}
        autoloaded = {p.name for p in obj.programs() if p.autoload}
    programs = set(sections)
    expected_programs = set(abi.PROGRAMS.values()) | ({abi.INSTALL_KEY_PROGRAM, *abi.GUARD_PROGRAMS} if sealing else set())
    expected_programs |= set(abi.SEAL_SYSCALL_PROGRAMS) if sealing else set()
    if programs != expected_programs:
        out.append(f"programs: {sorted(programs)} in the C, {sorted(expected_programs)} in abi.py")
    for name, hook in abi.GUARD_PROGRAMS.items():
        if name in sections and sections[name] != hook:
            out.append(f"program {name}: section {sections[name]!r} in the C, {hook!r} in abi.py")
        if name in autoloaded:
            out.append(f"program {name}: loaded by default; a guard program must be SEC(\"?{hook}\")")
    if sealing and abi.INSTALL_KEY_PROGRAM in programs:
        args = btf.function_args(abi.INSTALL_KEY_PROGRAM)
        want = [("args", f"struct {abi.SEAL_KEY_ARGS.name} *")]
        if args != want:
            out.append(f"program {abi.INSTALL_KEY_PROGRAM}: context {args} in the C, {want} in abi.py")
    if sealing and abi.FORGET_STREAMS_PROGRAM in programs:
        args = btf.function_args(abi.FORGET_STREAMS_PROGRAM)
        want = [("args", f"struct {abi.SEAL_FORGET_ARGS.name} *")]
        if args != want:
            out.append(f"program {abi.FORGET_STREAMS_PROGRAM}: context {args} in the C, {want} in abi.py")
    return out


def drift(object_bytes: bytes, *, n_rules: int, n_domains: int, facts: AbiFacts | None = None) -> list[str]:
    """Every difference between abi.py (or `facts`) and the object, one line each; [] when they agree."""
    facts = facts or AbiFacts()
    btf = Btf.from_object(object_bytes)
    sealing = abi.SEAL_KEYS_MAP in btf.section_variables(".maps")
    out: list[str] = []
    for py_enum, (c_name, prefix) in facts.enums.items():
        if sealing or py_enum not in SEAL_ONLY_ENUMS:
            out += _enum_drift(btf, py_enum, c_name, prefix)
    layouts = {layout.name: layout for layout in facts.layouts}
    for layout in facts.layouts:
        if sealing or layout.name not in SEAL_ONLY_LAYOUTS:
            out += _layout_drift(btf, layout)
    out += _map_drift(object_bytes, btf, sealing, n_rules, n_domains, layouts)
    return out
