"""ChaCha20-Poly1305 (RFC 8439) in plain eBPF against RFC 8439's vectors and Python `cryptography`.

bpf_templates/include/chacha20.h, poly1305.h and chacha20_poly1305.h run in
the kernel through BPF_PROG_TEST_RUN (tests/bpf/chacha_test.bpf.c) and must
agree bit for bit with ChaCha20Poly1305 both ways: sealed in BPF and opened
in Python, sealed in Python and opened in BPF, any change refused.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.poly1305 import Poly1305

from sealnet.contracts.libbpf import BpfObject

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "bpf" / "chacha_test.bpf.c"
INCLUDE = ROOT / "bpf_templates" / "include"
MAX_PAYLOAD = 1472  # CP_MAX_PAYLOAD: the largest UDP payload of a 1500-byte MTU
MAX_AAD = 96  # CP_MAX_AAD
TAG = 16
# struct cp_scratch: ... tag[16] | received[16] | reserved u32 | aad[128] | wire[2048], the payload at wire[16].
WIRE_LEN, WIRE_HEAD, AAD_BUF = 2048, 16, 128
TAG_AT = slice(-WIRE_LEN - AAD_BUF - 4 - 2 * TAG, -WIRE_LEN - AAD_BUF - 4 - TAG)
TC_ACT_OK, TC_ACT_SHOT = 0, 2

# RFC 8439 section 2.8.2 (the AEAD example) and appendix A.5 (the decryption example).
RFC_2_8_2 = dict(
    key=bytes(range(0x80, 0xA0)),
    nonce=bytes.fromhex("070000004041424344454647"),
    aad=bytes.fromhex("50515253c0c1c2c3c4c5c6c7"),
    plaintext=b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future,"
    b" sunscreen would be it.",
    ciphertext=bytes.fromhex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
        "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
        "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
        "3ff4def08e4b7a9de576d26586cec64b6116"
    ),
    tag=bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691"),
)
RFC_A_5 = dict(
    key=bytes.fromhex("1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0"),
    nonce=bytes.fromhex("000000000102030405060708"),
    aad=bytes.fromhex("f33388860000000000004e91"),
    plaintext=b"Internet-Drafts are draft documents valid for a maximum of six months and may be updated,"
    b" replaced, or obsoleted by other documents at any time. It is inappropriate to use Internet-Drafts"
    b" as reference material or to cite them other than as /\xe2\x80\x9cwork in progress./\xe2\x80\x9d",
    ciphertext=bytes.fromhex(
        "64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2"
        "4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf"
        "332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855"
        "9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4"
        "b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e"
        "af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a"
        "0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10"
        "49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29"
        "a6ad5cb4022b02709b"
    ),
    tag=bytes.fromhex("eead9d67890cbb22392336fea1851f38"),
)

LENGTHS = list(range(0, 81)) + [95, 96, 97, 127, 128, 129, 255, 256, 511, 512, 513, 1000, 1023, 1024, 1400,
                                1439, 1440, 1471, MAX_PAYLOAD]


@pytest.fixture
def cp(bpf_compile):
    obj = BpfObject.open_memory(bpf_compile(HARNESS.read_text(), "chacha_test", ("-I", str(INCLUDE))), "chacha")
    obj.load()
    yield obj
    obj.close()


def install_key(obj: BpfObject, key: bytes) -> None:
    obj.map("cp_key").update(bytes(4), key)


def _run(obj: BpfObject, program: str, nonce: bytes, aad: bytes, data: bytes) -> tuple[int, bytes]:
    result = obj.program(program).test_run(bytes(14) + nonce + bytes([len(aad)]) + aad + data)
    value = obj.map("cp_work").lookup(bytes(4))
    assert value is not None
    return result.retval, value


def seal(obj: BpfObject, nonce: bytes, aad: bytes, payload: bytes) -> tuple[int, bytes]:
    """The kernel's ciphertext || tag; also checks the tag it left in s->tag."""
    retval, scratch = _run(obj, "cp_seal_test", nonce, aad, payload)
    wire = scratch[-WIRE_LEN:]
    n = len(payload)
    if retval == TC_ACT_OK:
        assert scratch[TAG_AT] == wire[WIRE_HEAD + n:WIRE_HEAD + n + TAG]
    return retval, wire[WIRE_HEAD:WIRE_HEAD + n + TAG]


def open_(obj: BpfObject, nonce: bytes, aad: bytes, sealed: bytes) -> tuple[int, bytes]:
    retval, scratch = _run(obj, "cp_open_test", nonce, aad, sealed)
    return retval, scratch[-WIRE_LEN:][WIRE_HEAD:WIRE_HEAD + len(sealed) - TAG]


@pytest.mark.parametrize("vector", [RFC_2_8_2, RFC_A_5], ids=["rfc8439-2.8.2", "rfc8439-A.5"])
def test_rfc8439_vectors_seal_and_open(cp, vector: dict) -> None:
    install_key(cp, vector["key"])
    retval, out = seal(cp, vector["nonce"], vector["aad"], vector["plaintext"])
    assert retval == TC_ACT_OK
    assert out == vector["ciphertext"] + vector["tag"]
    retval, opened = open_(cp, vector["nonce"], vector["aad"], vector["ciphertext"] + vector["tag"])
    assert retval == TC_ACT_OK and opened == vector["plaintext"]


def test_chacha20_alone_matches_cryptography(cp) -> None:
    """The key stream from counter 1: RFC 8439 2.4.2's sunscreen text and random lengths."""
    rnd = random.Random(7)
    key = bytes(range(32))
    install_key(cp, key)
    nonce = bytes.fromhex("000000000000004a00000000")
    for data in [RFC_2_8_2["plaintext"]] + [rnd.randbytes(n) for n in (1, 63, 64, 65, 700, MAX_PAYLOAD)]:
        retval, scratch = _run(cp, "cp_chacha_test", nonce, b"", data)
        assert retval == TC_ACT_OK
        expected = Cipher(algorithms.ChaCha20(key, (1).to_bytes(4, "little") + nonce), None).encryptor().update(data)
        assert scratch[-WIRE_LEN:][WIRE_HEAD:WIRE_HEAD + len(data)] == expected
    # RFC 8439 2.4.2's first ciphertext bytes
    retval, scratch = _run(cp, "cp_chacha_test", nonce, b"", RFC_2_8_2["plaintext"])
    assert scratch[-WIRE_LEN:][WIRE_HEAD:WIRE_HEAD + 16] == bytes.fromhex("6e2e359a2568f98041ba0728dd0d6981")


def test_poly1305_alone_matches_cryptography(cp) -> None:
    rnd = random.Random(8)
    for n in (0, 1, 2, 3, 4, 16, 64, 90):
        key = rnd.randbytes(32) if n % 2 else bytes([0xFF]) * 32  # all-ones stresses the final reduction
        install_key(cp, key)
        data = rnd.randbytes(16 * n) if n != 3 else bytes([0xFF]) * 48
        retval, scratch = _run(cp, "cp_poly_test", bytes(12), b"", data)
        assert retval == TC_ACT_OK
        assert scratch[TAG_AT] == Poly1305.generate_tag(key, data), n


def test_seal_matches_cryptography_for_every_small_length_and_a_spread(cp) -> None:
    rnd = random.Random(1)
    key = os.urandom(32)
    install_key(cp, key)
    aead = ChaCha20Poly1305(key)
    for n in LENGTHS:
        nonce, aad, payload = rnd.randbytes(12), rnd.randbytes(rnd.randrange(0, MAX_AAD + 1)), rnd.randbytes(n)
        retval, out = seal(cp, nonce, aad, payload)
        assert retval == TC_ACT_OK
        assert out == aead.encrypt(nonce, payload, aad), f"length {n}, aad {len(aad)}"
        assert aead.decrypt(nonce, out, aad) == payload


def test_every_aad_length(cp) -> None:
    rnd = random.Random(2)
    key = os.urandom(32)
    install_key(cp, key)
    for aad_len in range(0, MAX_AAD + 1):
        nonce, aad, payload = rnd.randbytes(12), rnd.randbytes(aad_len), rnd.randbytes(rnd.randrange(0, 200))
        assert seal(cp, nonce, aad, payload)[1] == ChaCha20Poly1305(key).encrypt(nonce, payload, aad), aad_len


def test_open_accepts_cryptography_output_and_refuses_any_change(cp) -> None:
    rnd = random.Random(3)
    key = os.urandom(32)
    install_key(cp, key)
    aead = ChaCha20Poly1305(key)
    for n in LENGTHS:
        nonce, aad, payload = rnd.randbytes(12), rnd.randbytes(rnd.randrange(0, MAX_AAD + 1)), rnd.randbytes(n)
        sealed = aead.encrypt(nonce, payload, aad)
        retval, opened = open_(cp, nonce, aad, sealed)
        assert retval == TC_ACT_OK and opened == payload, f"length {n}"
        at = rnd.randrange(len(sealed))
        broken = bytearray(sealed)
        broken[at] ^= 1 << rnd.randrange(8)
        assert open_(cp, nonce, aad, bytes(broken))[0] == TC_ACT_SHOT, f"flip at {at} of {n}"
        if aad:
            assert open_(cp, nonce, aad[:-1] + bytes([aad[-1] ^ 0x80]), sealed)[0] == TC_ACT_SHOT
        assert open_(cp, bytes(12), aad, sealed)[0] == TC_ACT_SHOT
        if n:
            assert open_(cp, nonce, aad, sealed[:-TAG - 1] + sealed[-TAG:])[0] == TC_ACT_SHOT  # truncated


def test_refused_packet_is_left_encrypted(cp) -> None:
    """A bad tag is found before decryption: no plaintext of a forgery reaches the scratch area."""
    key = os.urandom(32)
    install_key(cp, key)
    nonce, payload = os.urandom(12), os.urandom(300)
    sealed = bytearray(ChaCha20Poly1305(key).encrypt(nonce, payload, b"aad"))
    sealed[-1] ^= 1
    retval, left = open_(cp, nonce, b"aad", bytes(sealed))
    assert retval == TC_ACT_SHOT and left == bytes(sealed[:-TAG])


def test_other_key_refused(cp) -> None:
    key, other = os.urandom(32), os.urandom(32)
    install_key(cp, other)
    nonce = os.urandom(12)
    assert open_(cp, nonce, b"", ChaCha20Poly1305(key).encrypt(nonce, b"payload", b""))[0] == TC_ACT_SHOT


def test_oversized_input_is_refused(cp) -> None:
    install_key(cp, os.urandom(32))
    assert seal(cp, bytes(12), b"", bytes(MAX_PAYLOAD + 1))[0] == TC_ACT_SHOT
    assert seal(cp, bytes(12), bytes(MAX_AAD + 1), b"x")[0] == TC_ACT_SHOT


def _conditional_jumps(obj: bytes) -> dict[str, int]:
    """Conditional jumps per function of the object's .text (BPF_JMP/JMP32 other than ja, call, exit)."""
    elf = ELFFile(io.BytesIO(obj))
    text = elf.get_section_by_name(".text")
    code = text.data()
    out = {}
    for sym in elf.get_section_by_name(".symtab").iter_symbols():
        if sym["st_info"]["type"] != "STT_FUNC" or elf.get_section(sym["st_shndx"]).name != ".text":
            continue
        body = code[sym["st_value"]:sym["st_value"] + sym["st_size"]]
        ops = [body[i] for i in range(0, len(body), 8)]
        out[sym.name] = sum(1 for op in ops if op & 0x07 in (0x05, 0x06) and op & 0xF0 not in (0x00, 0x80, 0x90))
    return out


@pytest.mark.parametrize("cpu", ["v1", "v3"])
def test_no_branch_depends_on_key_or_data(bpf_compile, cpu: str) -> None:
    """Constant time, checked on the code clang emits: the ChaCha20 block and Poly1305's final
    reduction have no conditional jump at all, and each bpf_loop callback only its one bound
    check on the public index."""
    jumps = _conditional_jumps(bpf_compile(HARNESS.read_text(), f"chacha_ct_{cpu}", ("-I", str(INCLUDE), f"-mcpu={cpu}")))
    assert jumps["chacha20_xor_block"] == 0 and jumps["poly1305_finish"] == 0
    for callback in ("cp_chacha_block", "cp_poly_block", "cp_poly_chunk"):
        assert jumps[callback] == 1, (callback, jumps)


# RFC 8439 A.3 #5 and #6, the final reduction's edge cases, with the RFC's tags; then edge-case
# messages in the spirit of #7..#9 (carries through every limb), checked against cryptography.
POLY_EDGE_CASES = [
    (bytes([2]) + bytes(31), bytes([0xFF]) * 16, bytes([3]) + bytes(15)),
    (bytes([2]) + bytes(15) + bytes([0xFF]) * 16, bytes([2]) + bytes(15), bytes([3]) + bytes(15)),
    (bytes([1]) + bytes(31), bytes([0xFF]) * 16 + bytes([0xF0]) + bytes([0xFF]) * 15 + bytes([0x11]) + bytes(15), None),
    (bytes([1]) + bytes(31), bytes([0xFF]) * 16 + bytes([0xFB]) + bytes([0xFE]) * 15 + bytes([1]) * 16, None),
    (bytes([2]) + bytes(31), bytes([0xFD]) + bytes([0xFF]) * 15, None),
]


@pytest.mark.parametrize("key, message, tag", POLY_EDGE_CASES)
def test_poly1305_reduction_edge_cases(cp, key: bytes, message: bytes, tag: bytes | None) -> None:
    install_key(cp, key)
    retval, scratch = _run(cp, "cp_poly_test", bytes(12), b"", message)
    assert retval == TC_ACT_OK
    assert scratch[TAG_AT] == Poly1305.generate_tag(key, message)
    if tag is not None:
        assert scratch[TAG_AT] == tag
