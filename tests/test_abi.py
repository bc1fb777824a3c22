"""contracts/abi.py, the Python side of the data plane's ABI, against the compiled object.

No kernel: clang builds the data plane, its BTF and map definitions are read
from the ELF. Any name, value, offset or size abi.py states that the C does
not (or the other way round) fails here; the drift tests prove the check
fails when either side is changed alone.
"""

from __future__ import annotations

import dataclasses
import enum
import shutil
from pathlib import Path

import pytest

from sealnet.compiler.build import compile_c, find_clang
from sealnet.compiler.codegen import INCLUDE_DIR, render
from sealnet.contracts import abi
from sealnet.contracts.abi_check import AbiFacts, drift
from policies import compile_ok

POLICY = '''policy "abi" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
domain c { tee tdx; nodes 198.18.0.3/32 }
rule ab: seal from a to b
rule ba: seal from b to a
rule cb: allow plaintext udp from c to b port 9
rule ca: deny from c to a
default deny
cipher aes-ccm
'''
# What the template defines before it includes the sealing path.
POLICY_PARAMETERS = '#define N_DOMAINS 3u\n#define SEAL_AES_DRIVER "aes-generic"\n'


@pytest.fixture(scope="module")
def clang():
    return find_clang()


@pytest.fixture(scope="module")
def policy():
    return compile_ok(POLICY)


@pytest.fixture(scope="module")
def sealed_object(policy, clang) -> bytes:
    return compile_c(render(policy, with_seal=True), clang)


def _drift(object_bytes: bytes, policy, facts: AbiFacts | None = None) -> list[str]:
    return drift(object_bytes, n_rules=len(policy.rules), n_domains=len(policy.domains), facts=facts)


def test_abi_py_agrees_with_the_sealing_data_plane(sealed_object, policy) -> None:
    assert _drift(sealed_object, policy) == []


def test_abi_py_agrees_with_the_chacha20_poly1305_data_plane(clang) -> None:
    policy = compile_ok(POLICY.replace("cipher aes-ccm", "cipher chacha20-poly1305"))
    facts = AbiFacts.for_suite(abi.SealSuite.CHACHA20_POLY1305)
    assert _drift(compile_c(render(policy, with_seal=True), clang), policy, facts) == []
    assert abi.seal_suite_of_key_slot(abi.seal_key_layout(abi.SealSuite.CHACHA20_POLY1305).size) == \
        abi.SealSuite.CHACHA20_POLY1305


def test_abi_py_agrees_with_a_data_plane_without_sealing(policy, clang) -> None:
    assert _drift(compile_c(render(policy, with_seal=False), clang), policy) == []


@pytest.mark.parametrize("driver", abi.AES_DRIVERS)
def test_every_aes_driver_builds_the_same_abi(policy, clang, driver: str) -> None:
    assert _drift(compile_c(render(policy, with_seal=True, aes_implementation=driver), clang), policy) == []


def test_slot_formulas_cover_each_map_exactly_once(policy) -> None:
    n_rules, n_domains = len(policy.rules), len(policy.domains)
    verdict_slots = {abi.verdict_slot(d, v) for d in abi.Direction for v in abi.Verdict}
    assert verdict_slots == set(range(abi.verdict_slot_count()))
    rule_slots = {abi.rule_slot(d, r, n_rules) for d in abi.Direction for r in range(n_rules + 1)}
    assert rule_slots == set(range(abi.rule_slot_count(n_rules)))
    pairs = {abi.seal_pair(s, d, n_domains) for s in range(1, n_domains + 1) for d in range(1, n_domains + 1)}
    assert len(pairs) == n_domains ** 2 and 0 not in pairs and max(pairs) < abi.seal_pair_count(n_domains)
    key_slots = {abi.seal_key_slot(p, e) for p in pairs for e in range(256)}
    assert len(key_slots) == len(pairs) * abi.SEAL_EPOCH_SLOTS
    assert max(key_slots) < abi.seal_key_slot_count(n_domains)
    with pytest.raises(ValueError):
        abi.seal_pair(0, 1, n_domains)  # domain ids are 1-based


def test_layouts_pack_and_read_their_fields() -> None:
    args = abi.SEAL_KEY_ARGS.pack(slot=7, epoch=300, remove=1, err=-2)
    assert len(args) == abi.SEAL_KEY_ARGS.size
    assert abi.SEAL_KEY_ARGS.unpack(args) == {"key": bytes(32), "slot": 7, "epoch": 300, "remove": 1, "err": -2}
    header = abi.SEAL_HDR.pack(version=1, suite=1, epoch=3, sender=0x01020304, cpu=5, seq=6)
    assert bytes(header) == bytes([1, 1, 3, 1, 2, 3, 4, 5]) + (6).to_bytes(8, "big")  # wire order
    with pytest.raises(ValueError, match="kernel"):
        abi.SEAL_KEY.pack(aead=b"x")


# ---------------------------------------------------------------- the check fails on drift


def test_drift_in_abi_py_is_found(sealed_object, policy) -> None:
    key = abi.SEAL_KEY
    swapped = dataclasses.replace(key, fields=(dataclasses.replace(key.field("epoch"), offset=4),
                                               dataclasses.replace(key.field("installed"), offset=0),
                                               key.field("aead")))
    verdict_names = {m.name: m.value for m in abi.Verdict if m is not abi.Verdict.SEAL_TOO_BIG_DROP}
    verdict_names["SEAL_REPLAY_DROP"] = 99
    short_verdicts = enum.IntEnum("Verdict", verdict_names)  # type: ignore[misc]
    enums = {short_verdicts if e is abi.Verdict else e: names for e, names in abi.C_ENUMS.items()}
    facts = AbiFacts(enums=enums, layouts=tuple(swapped if l is key else l for l in abi.LAYOUTS))  # noqa: E741
    found = "\n".join(_drift(sealed_object, policy, facts))
    assert "struct seal_key.epoch: offset 0 in the C, 4 in abi.py" in found
    assert "struct seal_key.installed: offset 4 in the C, 0 in abi.py" in found
    assert "V_SEAL_REPLAY_DROP is 13 in the C, 99 in abi.py" in found
    assert "V_SEAL_TOO_BIG_DROP = 15 in the C, missing in abi.py" in found


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{path.name} no longer has {old!r}: update this test"
    path.write_text(text.replace(old, new))


def test_drift_in_the_c_is_found(policy, clang, tmp_path) -> None:
    include = tmp_path / "include"
    shutil.copytree(INCLUDE_DIR, include)
    _edit(include / "seal_maps.h", "\t__u32 epoch;\n\t__u32 installed;", "\t__u32 installed;\n\t__u32 epoch;")
    _edit(include / "seal_hdr.h", "SEAL_VERSION = 1,", "SEAL_VERSION = 2,")
    _edit(include / "seal_keys.h", "__u32 remove;", "__u64 remove;")
    _edit(include / "verdicts.h", "V_COUNT = 17,", "V_SEAL_NEW_DROP = 17,\n\tV_COUNT = 18,")
    found = "\n".join(_drift(compile_c(render(policy, with_seal=True), clang, include_dir=include), policy))
    assert "struct seal_key: members ['installed', 'epoch', 'aead'] in the C" in found
    assert "struct seal_key.epoch: offset 4 in the C, 0 in abi.py" in found
    assert "SEAL_VERSION is 2 in the C, 1 in abi.py" in found
    assert "struct seal_key_args.remove: 8 bytes in the C, 4 in abi.py" in found
    assert "V_SEAL_NEW_DROP = 17 in the C, missing in abi.py" in found
    assert "V_COUNT is 18 in the C, 17 in abi.py" in found
    assert "map verdict_hits: 36 entries in the C, 34 by abi.py's slot formula" in found


# ---------------------------------------------------------------- headers stand alone


@pytest.mark.parametrize("header", sorted(p.name for p in INCLUDE_DIR.glob("*.h")))
def test_each_header_compiles_alone(clang, header: str) -> None:
    """Each header includes what it uses: alone in a translation unit (with the policy's
    parameters, which the generated data plane defines) it compiles without warnings."""
    compile_c(f'{POLICY_PARAMETERS}#include "{header}"\n', clang)


def test_the_stream_tables_set_hash_is_siphash() -> None:
    """seal_replay_set() is SipHash-1-3 of the stream word: the same rounds give SipHash-2-4's
    reference vector (key 00..0f, message 00..07); the kernel's placement is held to
    seal_replay_set() by tests/test_seal_replay_eviction.py."""
    k0, k1 = int.from_bytes(bytes(range(8)), "little"), int.from_bytes(bytes(range(8, 16)), "little")
    message = int.from_bytes(bytes(range(8)), "little")
    assert abi.siphash_word(k0, k1, message, 2, 4).to_bytes(8, "little") == bytes.fromhex("6224939a79f5f593")
    assert abi.seal_replay_set(message, k0, k1) == abi.siphash_word(k0, k1, message, 1, 3) % abi.SEAL_REPLAY_SETS
    assert abi.seal_stream_of(abi.seal_stream_word(0xC6120002, 9, 5, 3)) == (0xC6120002, 9, 5, 3)


def test_a_guard_program_loaded_by_default_or_on_another_hook_is_drift(policy, clang) -> None:
    """The bypass guard's programs are SEC("?lsm/<hook>") with abi.py's hooks: one that libbpf
    would load by default (every loader of the object would then need BPF LSM) or that attaches
    elsewhere is reported."""
    source = render(policy, with_seal=True)
    assert 'SEC("?lsm/socket_bind")' in (INCLUDE_DIR / "seal_guard.h").read_text()
    header = (INCLUDE_DIR / "seal_guard.h").read_text().replace('SEC("?lsm/socket_bind")', 'SEC("lsm/socket_bind")')
    header = header.replace('SEC("?lsm/socket_post_create")', 'SEC("?lsm/socket_create")')
    inline = source.replace('#include "seal_guard.h"', header.replace("#ifndef SEALNET_SEAL_GUARD_H", "#if 1"))
    found = "\n".join(_drift(compile_c(inline, clang), policy))
    assert "program guard_xsk_bind: loaded by default" in found
    assert "program guard_xsk_sock: section 'lsm/socket_create' in the C, 'lsm/socket_post_create' in abi.py" in found
