"""AES-CCM sealing in eBPF (bpf_crypto's ecb(aes) and cbc(aes)) against Python `cryptography`.

The first building block of sealing (issue 5): the eBPF CCM construction of
bpf_templates/include/seal_ccm.h must agree bit for bit with AESCCM on the
same key, nonce, associated data and payload.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from sealnet.contracts.libbpf import BpfObject

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "bpf" / "ccm_test.bpf.c"
INCLUDE = ROOT / "bpf_templates" / "include"
MAX_PAYLOAD = 512  # the harness's CCM_MAX_PAYLOAD
TAG = 16
WIRE_LEN, WIRE_HEAD = 2048, 16  # struct ccm_scratch ends with wire[CCM_WIRE_LEN]
SLOT_ECB, SLOT_CBC = 0, 1
TC_ACT_OK, TC_ACT_SHOT = 0, 2


@pytest.fixture
def ccm(bpf_compile):
    obj = BpfObject.open_memory(bpf_compile(HARNESS.read_text(), "ccm_test", ("-I", str(INCLUDE))), "ccm")
    obj.load()
    yield obj
    obj.close()


def install_key(obj: BpfObject, key: bytes) -> None:
    for slot in (SLOT_ECB, SLOT_CBC):
        args = key.ljust(32, b"\0") + struct.pack("<IIi", len(key), slot, 0)
        result = obj.program("ccm_setup").run_syscall(args)
        (err,) = struct.unpack_from("<i", result.ctx_out, 40)
        assert result.retval == 0 and err == 0, f"bpf_crypto_ctx_create failed: {err}"


def _run(obj: BpfObject, program: str, nonce: bytes, aad: bytes, data: bytes) -> tuple[int, bytes]:
    result = obj.program(program).test_run(bytes(14) + nonce + bytes([len(aad)]) + aad + data)
    value = obj.map("ccm_work").lookup(bytes(4))
    assert value is not None
    return result.retval, value[-WIRE_LEN:]


def seal(obj: BpfObject, nonce: bytes, aad: bytes, payload: bytes) -> tuple[int, bytes]:
    retval, wire = _run(obj, "ccm_seal_test", nonce, aad, payload)
    n = len(payload)
    tag_copy = obj.map("ccm_work").lookup(bytes(4))[-WIRE_LEN - TAG:-WIRE_LEN]
    if retval == TC_ACT_OK:
        assert wire[WIRE_HEAD + n:WIRE_HEAD + n + TAG] == tag_copy  # the tag follows the ciphertext
    return retval, wire[WIRE_HEAD:WIRE_HEAD + n + TAG]


def open_(obj: BpfObject, nonce: bytes, aad: bytes, sealed: bytes) -> tuple[int, bytes]:
    retval, wire = _run(obj, "ccm_open_test", nonce, aad, sealed)
    return retval, wire[WIRE_HEAD:WIRE_HEAD + len(sealed) - TAG]


@pytest.mark.parametrize("key_len", [16, 24, 32])
def test_seal_matches_cryptography_for_every_small_length_and_a_spread(ccm, key_len: int) -> None:
    rnd = random.Random(key_len)
    key = os.urandom(key_len)
    install_key(ccm, key)
    lengths = list(range(0, 65)) + [100, 127, 128, 129, 255, 256, 257, 400, 511, 512]
    for n in lengths:
        nonce, aad, payload = rnd.randbytes(13), rnd.randbytes(rnd.randrange(0, 97)), rnd.randbytes(n)
        retval, out = seal(ccm, nonce, aad, payload)
        assert retval == TC_ACT_OK
        assert out == AESCCM(key, tag_length=TAG).encrypt(nonce, payload, aad), f"length {n}, aad {len(aad)}"
        assert AESCCM(key, tag_length=TAG).decrypt(nonce, out, aad) == payload


@pytest.mark.parametrize("key_len", [16, 32])
def test_open_accepts_cryptography_output_and_refuses_any_change(ccm, key_len: int) -> None:
    rnd = random.Random(100 + key_len)
    key = os.urandom(key_len)
    install_key(ccm, key)
    aead = AESCCM(key, tag_length=TAG)
    for n in list(range(0, 40)) + [63, 64, 65, 200, 496]:
        nonce, aad, payload = rnd.randbytes(13), rnd.randbytes(rnd.randrange(0, 97)), rnd.randbytes(n)
        sealed = aead.encrypt(nonce, payload, aad)
        retval, opened = open_(ccm, nonce, aad, sealed)
        assert retval == TC_ACT_OK and opened == payload, f"length {n}"
        at = rnd.randrange(len(sealed))
        broken = bytearray(sealed)
        broken[at] ^= 1 << rnd.randrange(8)
        assert open_(ccm, nonce, aad, bytes(broken))[0] == TC_ACT_SHOT, f"flip at {at} of {n}"
        if aad:
            assert open_(ccm, nonce, aad[:-1] + bytes([aad[-1] ^ 0x80]), sealed)[0] == TC_ACT_SHOT
        assert open_(ccm, bytes(13), aad, sealed)[0] == TC_ACT_SHOT


def test_other_key_or_nonce_changes_everything(ccm) -> None:
    key, other = os.urandom(16), os.urandom(16)
    install_key(ccm, key)
    nonce, aad, payload = os.urandom(13), b"header", os.urandom(64)
    _, out = seal(ccm, nonce, aad, payload)
    assert out != AESCCM(other, tag_length=TAG).encrypt(nonce, payload, aad)
    _, again = seal(ccm, bytes(13), aad, payload)
    assert again[:64] != out[:64] and again[-TAG:] != out[-TAG:]


def test_without_keys_nothing_is_sealed(ccm) -> None:
    retval, _ = seal(ccm, bytes(13), b"", b"plaintext")
    assert retval == TC_ACT_SHOT  # no context installed: fail closed


def test_oversized_input_is_refused(ccm) -> None:
    install_key(ccm, os.urandom(16))
    retval, _ = seal(ccm, bytes(13), b"", bytes(MAX_PAYLOAD + 1))
    assert retval == TC_ACT_SHOT
