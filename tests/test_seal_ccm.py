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

from runtime.libbpf import BpfObject

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parent.parent
HARNESS = ROOT / "tests" / "bpf" / "ccm_test.bpf.c"
INCLUDE = ROOT / "bpf_templates" / "include"
MAX_PAYLOAD = 512  # the harness's CCM_MAX_PAYLOAD
TAG = 16
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


def seal(obj: BpfObject, nonce: bytes, aad: bytes, payload: bytes) -> tuple[int, bytes]:
    result = obj.program("ccm_seal_test").test_run(bytes(14) + nonce + bytes([len(aad)]) + aad + payload)
    value = obj.map("ccm_work").lookup(bytes(4))
    assert value is not None
    tag = value[-TAG:]
    sealed = value[-TAG - MAX_PAYLOAD - 16:-TAG][:len(payload)]
    return result.retval, sealed + tag


@pytest.mark.parametrize("key_len", [16, 24, 32])
def test_seal_matches_cryptography_for_every_small_length_and_a_spread(ccm, key_len: int) -> None:
    rnd = random.Random(key_len)
    key = os.urandom(key_len)
    install_key(ccm, key)
    lengths = list(range(0, 65)) + [100, 127, 128, 129, 255, 256, 257, 400, 511, 512]
    for n in lengths:
        nonce, aad, payload = rnd.randbytes(13), rnd.randbytes(rnd.randrange(0, 41)), rnd.randbytes(n)
        retval, out = seal(ccm, nonce, aad, payload)
        assert retval == TC_ACT_OK
        assert out == AESCCM(key, tag_length=TAG).encrypt(nonce, payload, aad), f"length {n}, aad {len(aad)}"
        assert AESCCM(key, tag_length=TAG).decrypt(nonce, out, aad) == payload


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
