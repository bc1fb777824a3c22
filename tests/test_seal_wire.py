"""The Python decoder of docs/wire-format.md (runtime/seal_wire.py) for both suites.

The data plane is held to this decoder byte for byte elsewhere
(test_seal_datapath.py); here the decoder is held to the page: the key
derivation and the nonce of each suite are rebuilt from the documented
formulas with `cryptography` directly, not through the decoder's helpers.
"""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealnet.runtime import seal_wire
from packets import checksums_valid, icmp_echo, tcp, udp

SUITES = [seal_wire.AES_128_CCM, seal_wire.CHACHA20_POLY1305]
A, B = "198.18.0.1", "198.18.0.2"


def documented_key(pair_key: bytes, label: str, length: int, src: str, dst: str, epoch: int) -> bytes:
    info = f"sealnet/v1 {label} ".encode() + src.encode() + b"\0" + dst.encode() + b"\0" + bytes([epoch % 256])
    return HKDF(hashes.SHA384(), length=length, salt=b"sealnet/v1", info=info).derive(pair_key)


def test_direction_keys_are_the_documented_hkdf_and_differ_per_suite_and_direction() -> None:
    pair = os.urandom(32)
    ccm = seal_wire.direction_key(pair, "a", "b", 300, seal_wire.AES_128_CCM)
    chacha = seal_wire.direction_key(pair, "a", "b", 300, seal_wire.CHACHA20_POLY1305)
    assert ccm == documented_key(pair, "aes-128-ccm", 16, "a", "b", 44)
    assert chacha == documented_key(pair, "chacha20-poly1305", 32, "a", "b", 44)
    assert chacha[:16] != ccm
    assert seal_wire.direction_key(pair, "b", "a", 300, seal_wire.CHACHA20_POLY1305) != chacha


def test_chacha_nonce_is_sender_cpu_and_the_low_seven_sequence_bytes() -> None:
    header = seal_wire.SealHeader(epoch=7, sender=0xA1B2C3D4, cpu=9, seq=0x0102030405060708 >> 8,
                                  suite=seal_wire.SUITE_CHACHA20_POLY1305)
    assert header.nonce == bytes.fromhex("a1b2c3d4" "09" "01020304050607")
    packed = header.pack()
    assert packed[1] == 2 and packed[8] == 0  # suite 2; the sequence's top byte is 0


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
@pytest.mark.parametrize("make", [
    lambda: udp(A, B, os.urandom(100)),
    lambda: tcp(A, B, os.urandom(1000), options=b"\x01\x01\x01\x01"),
    lambda: icmp_echo(A, B, os.urandom(56)),
    lambda: udp(A, B, b""),
], ids=["udp", "tcp", "icmp", "empty"])
def test_seal_then_open_and_the_ciphertext_is_the_documented_aead(suite, make) -> None:
    packet = make()
    key = os.urandom(suite.key_len)
    header = seal_wire.SealHeader(epoch=3, sender=77, cpu=1, seq=12345, suite=suite.id)
    sealed = seal_wire.seal(packet, key, header)
    assert len(sealed) == len(packet) + 32 and checksums_valid(sealed)
    view = seal_wire.Ipv4View.parse(sealed)
    head = sealed[view.payload_at:view.payload_at + 16]
    aad = seal_wire.associated_data(sealed, view, head)
    nonce = head[3:16] if suite.id == 1 else head[3:8] + head[9:16]
    aead = AESCCM(key, tag_length=16) if suite.id == 1 else ChaCha20Poly1305(key)
    assert aead.decrypt(nonce, sealed[view.payload_at + 16:], aad) == packet[view.payload_at:]
    assert seal_wire.open_sealed(sealed, key) == (header, packet)
    assert seal_wire.open_sealed(sealed, key, frozenset({suite.id})) == (header, packet)


def test_a_suite_the_receiver_does_not_allow_is_malformed() -> None:
    key = os.urandom(32)
    sealed = seal_wire.seal(udp(A, B, b"x" * 40), key,
                            seal_wire.SealHeader(1, 2, 0, 1, suite=seal_wire.SUITE_CHACHA20_POLY1305))
    with pytest.raises(seal_wire.SealError) as err:
        seal_wire.open_sealed(sealed, key, frozenset({seal_wire.SUITE_AES_128_CCM}))
    assert err.value.reason == "seal_malformed_drop"


def test_suite_byte_changed_is_refused() -> None:
    key = os.urandom(32)
    sealed = bytearray(seal_wire.seal(udp(A, B, b"y" * 40), key,
                                      seal_wire.SealHeader(1, 2, 0, 1, suite=seal_wire.SUITE_CHACHA20_POLY1305)))
    sealed[28 + 1] = 3  # no such suite
    with pytest.raises(seal_wire.SealError) as err:
        seal_wire.open_sealed(bytes(sealed), key)
    assert err.value.reason == "seal_malformed_drop"


def test_chacha_sequences_stop_where_the_nonce_would_repeat() -> None:
    key = os.urandom(32)
    last = seal_wire.CHACHA20_POLY1305.max_seq
    assert last == 2**56 - 1
    seal_wire.seal(udp(A, B, b"z"), key, seal_wire.SealHeader(1, 2, 0, last, suite=2))
    with pytest.raises(seal_wire.SealError) as err:
        seal_wire.seal(udp(A, B, b"z"), key, seal_wire.SealHeader(1, 2, 0, last + 1, suite=2))
    assert err.value.reason == "seal_no_key_drop"
    # A packet claiming such a sequence is refused before any key is used.
    forged = bytearray(seal_wire.seal(udp(A, B, b"z"), key, seal_wire.SealHeader(1, 2, 0, last, suite=2)))
    forged[28 + 8] = 1
    with pytest.raises(seal_wire.SealError) as err:
        seal_wire.open_sealed(bytes(forged), key)
    assert err.value.reason == "seal_malformed_drop"
