"""The sealing data plane in the kernel (BPF_PROG_TEST_RUN) against docs/wire-format.md.

Every sealed packet the egress program produces is opened by the Python
decoder (runtime/seal_wire.py, on `cryptography`'s AESCCM and
ChaCha20Poly1305) and is byte for
byte what that decoder seals; every packet Python seals opens in the ingress
program to the original bytes. Then the attacks: flipped bytes, replays,
other pairs' keys, plaintext, missing keys, with the counter of each reason.
Every test runs once per suite a policy's `cipher` can choose.
"""

from __future__ import annotations

import random

import pytest

from sealnet.runtime import seal_keys, seal_wire
from packets import ETH, checksums_valid, icmp_echo, tcp, udp
from sealnet.contracts.manifest import CIPHER_SUITES
from sealing import ADDR, TC_ACT_OK, TC_ACT_SHOT, SealedDatapath, counted, pair_key

pytestmark = pytest.mark.kernel

LENGTHS = list(range(0, 65)) + [100, 255, 256, 511, 512, 777, 1000, 1023, 1024, 1200, 1399, 1400]
TCP_OPTIONS = bytes.fromhex("020405b4" "0101080a000000010000000a")  # MSS, NOP, NOP, timestamps


@pytest.fixture(params=CIPHER_SUITES)
def cipher(request) -> str:
    return request.param


@pytest.fixture
def dp(tmp_path, cipher: str):
    loaded = SealedDatapath.load(str(tmp_path / "state"), cipher=cipher)
    loaded.install({("a", "b"): {"current": (5, pair_key()), "next": (6, pair_key())},
                    ("a", "c"): {"current": (1, pair_key())}})
    yield loaded
    loaded.close()


def _check_sealed(dp: SealedDatapath, original: bytes, sealed: bytes, src: str = "a", dst: str = "b") -> None:
    assert len(sealed) == len(original) + seal_wire.OVERHEAD
    assert checksums_valid(sealed), "the sealed packet's IPv4 or L4 checksum is wrong"
    key = dp.direction_key(src, dst)
    header, opened = seal_wire.open_sealed(sealed, key)
    assert opened == original
    assert (header.version, header.suite, header.epoch, header.sender) == \
        (1, dp.suite.id, 5 if dst == "b" else 1, dp.sender)
    assert header.seq >= 1
    assert seal_wire.seal(original, key, header) == sealed  # byte for byte what the format says


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_egress_seals_what_cryptography_opens(dp, proto: str) -> None:
    rnd = random.Random(proto)
    seen: set[tuple[int, int]] = set()
    lengths = LENGTHS if proto == "udp" else LENGTHS[::3]
    for n in lengths:
        payload = rnd.randbytes(n)
        packet = udp(ADDR["a"], ADDR["b"], payload) if proto == "udp" else \
            tcp(ADDR["a"], ADDR["b"], payload, options=TCP_OPTIONS)
        retval, sealed = dp.egress(packet)
        assert retval == TC_ACT_OK, f"length {n}"
        _check_sealed(dp, packet, sealed)
        header = seal_wire.SealHeader.unpack(sealed[seal_wire.Ipv4View.parse(sealed).payload_at:])
        assert (header.cpu, header.seq) not in seen, "a nonce repeated"
        seen.add((header.cpu, header.seq))
        if n >= 8:
            assert payload[:8] not in sealed, "plaintext on the wire"


def test_egress_seals_icmp_whole_and_per_pair_key(dp) -> None:
    packet = icmp_echo(ADDR["a"], ADDR["c"], b"ping payload " * 5)
    retval, sealed = dp.egress(packet)
    assert retval == TC_ACT_OK
    _check_sealed(dp, packet, sealed, "a", "c")
    assert sealed[20] == seal_wire.VERSION  # no L4 header in clear: the seal header follows IPv4


@pytest.mark.parametrize("proto", ["udp", "tcp", "icmp"])
def test_ingress_opens_what_python_seals(dp, proto: str) -> None:
    rnd = random.Random(7)
    key = dp.direction_key("b", "a")
    for seq, n in enumerate(LENGTHS if proto == "udp" else LENGTHS[::4], start=1):
        payload = rnd.randbytes(n)
        packet = {"udp": lambda: udp(ADDR["b"], ADDR["a"], payload),
                  "tcp": lambda: tcp(ADDR["b"], ADDR["a"], payload, options=TCP_OPTIONS),
                  "icmp": lambda: icmp_echo(ADDR["b"], ADDR["a"], payload)}[proto]()
        sealed = seal_wire.seal(packet, key, dp.header(epoch=5, sender=99, cpu=3, seq=seq))
        (retval, opened), moved = counted(dp, "ingress", lambda: dp.ingress(sealed))
        assert retval == TC_ACT_OK and moved == {"seal_sent"}, f"length {n}: {moved}"
        assert opened == packet and checksums_valid(opened)


def test_the_next_epoch_opens_and_rotation_moves_egress(dp) -> None:
    nxt = dp.direction_key("b", "a", "next")
    packet = udp(ADDR["b"], ADDR["a"], b"after rotation")
    sealed = seal_wire.seal(packet, nxt, dp.header(epoch=6, sender=5, cpu=0, seq=1))
    assert dp.ingress(sealed) == (TC_ACT_OK, packet)

    old = dp.pair_keys[("a", "b")]
    dp.install({("a", "b"): {"current": old["next"], "next": (7, pair_key())},
                ("a", "c"): dp.pair_keys[("a", "c")]})
    retval, out = dp.egress(udp(ADDR["a"], ADDR["b"], b"x" * 30))
    assert retval == TC_ACT_OK and seal_wire.SealHeader.unpack(out[28:]).epoch == 6
    previous = seal_wire.direction_key(old["current"][1], "b", "a", 5, dp.suite)
    late = seal_wire.seal(packet, previous, dp.header(epoch=5, sender=5, cpu=0, seq=2))
    assert dp.ingress(late) == (TC_ACT_OK, packet)  # a peer not yet rotated: the previous epoch still opens
    assert seal_keys.retire_previous(dp.handles())  # the grace period ends
    stale = seal_wire.seal(packet, previous, dp.header(epoch=5, sender=5, cpu=0, seq=3))
    (retval, _), moved = counted(dp, "ingress", lambda: dp.ingress(stale))
    assert retval == TC_ACT_SHOT and moved == {"seal_unknown_key_drop"}
    assert dp.ingress(seal_wire.seal(packet, nxt, dp.header(epoch=6, sender=5, cpu=0, seq=4)))[0] == TC_ACT_OK


# ------------------------------------------------------------------ attacks

# Bytes outside the AEAD's reach, as docs/wire-format.md lists them: Ethernet
# addresses, TOS, IP id, TTL, the IP checksum and the L4 checksum. Changing
# them cannot change what the application receives.
UNAUTHENTICATED_UDP = {*range(0, 12), 14 + 1, 14 + 4, 14 + 5, 14 + 8, 14 + 10, 14 + 11, 14 + 26, 14 + 27}


def test_every_byte_flipped_is_dropped_unless_it_is_outside_the_aead(dp) -> None:
    key = dp.direction_key("b", "a")
    packet = udp(ADDR["b"], ADDR["a"], bytes(range(40)), sport=7000, dport=40000)
    frame_len = 14 + len(packet) + seal_wire.OVERHEAD
    reasons: dict[str, int] = {}
    for at in range(frame_len):
        sealed = bytearray(ETH + seal_wire.seal(packet, key, dp.header(5, 42, 0, at + 1)))
        sealed[at] ^= 0xFF
        before = dp.verdicts("ingress")
        r = dp.obj.program("sealnet_ingress").test_run(bytes(sealed), data_size_out=4096)
        if at in UNAUTHENTICATED_UDP:
            assert r.retval == TC_ACT_OK, f"byte {at} outside the AEAD was dropped"
            assert r.data_out[14 + 28:] == packet[28:], f"byte {at}: payload changed"
            continue
        assert r.retval == TC_ACT_SHOT, f"flipped byte {at} was accepted"
        after = dp.verdicts("ingress")
        for v in after:
            if after[v] != before[v]:
                reasons[v] = reasons.get(v, 0) + 1
    # The seal header, ciphertext and tag (and authenticated headers) fail the tag.
    assert reasons["seal_bad_tag_drop"] >= len(packet) - 28 + seal_wire.OVERHEAD - 3
    assert "seal_sent" not in reasons


def test_replays_are_dropped_and_the_window_matches_the_reference(dp) -> None:
    key = dp.direction_key("b", "a")
    packet = udp(ADDR["b"], ADDR["a"], b"once only")

    def attempt(seq: int, cpu: int = 0) -> int:
        sealed = seal_wire.seal(packet, key, dp.header(5, 1234, cpu, seq))
        return dp.ingress(sealed)[0]

    assert attempt(1) == TC_ACT_OK
    (retval, moved) = counted(dp, "ingress", lambda: attempt(1))
    assert retval == TC_ACT_SHOT and moved == {"seal_replay_drop"}
    assert attempt(1, cpu=1) == TC_ACT_OK  # another CPU is another stream
    assert counted(dp, "ingress", lambda: attempt(0, cpu=2)) == (TC_ACT_SHOT, {"seal_replay_drop"})

    rnd = random.Random(3)
    reference = seal_wire.ReplayWindow()
    reference.accept(1)
    top = 1
    for _ in range(300):
        step = rnd.choice([1, 1, 2, 5, 64, 70, 900, 959, 960, 961, 3000])
        seq = max(1, top + step if rnd.random() < 0.5 else top - rnd.randrange(0, 1100))
        top = max(top, seq)
        expected = TC_ACT_OK if reference.accept(seq) else TC_ACT_SHOT
        assert attempt(seq) == expected, f"sequence {seq}, top {reference.top}"


def test_a_packet_sealed_under_another_pairs_key_is_dropped(dp) -> None:
    packet = udp(ADDR["b"], ADDR["a"], b"wrong key")
    for key in (dp.direction_key("a", "b"), dp.direction_key("c", "a"), dp.direction_key("b", "a", "next")):
        sealed = seal_wire.seal(packet, key, dp.header(5, 8, 0, 1))
        assert counted(dp, "ingress", lambda: dp.ingress(sealed)[0]) == (TC_ACT_SHOT, {"seal_bad_tag_drop"})
    # Re-addressed to another pair: the addresses are associated data.
    good = bytearray(seal_wire.seal(packet, dp.direction_key("c", "a"), dp.header(1, 8, 0, 1)))
    good[12:16] = bytes(map(int, ADDR["b"].split(".")))
    good[10:12] = b"\0\0"
    good[10:12] = seal_wire.internet_checksum(bytes(good[:20])).to_bytes(2, "big")
    assert dp.ingress(bytes(good))[0] == TC_ACT_SHOT


def test_plaintext_where_seal_is_required_is_dropped(dp) -> None:
    for packet in (udp(ADDR["b"], ADDR["a"], b"plaintext that should have been sealed"),
                   udp(ADDR["b"], ADDR["a"], b""), tcp(ADDR["b"], ADDR["a"], bytes(100))):
        assert counted(dp, "ingress", lambda: dp.ingress(packet)[0]) == (TC_ACT_SHOT, {"seal_plaintext_drop"})
    allowed = udp(ADDR["c"], ADDR["b"], b"plaintext allowed", dport=9)
    assert dp.ingress(allowed) == (TC_ACT_OK, allowed)


def test_unknown_epoch_suite_and_fragments(dp) -> None:
    packet = udp(ADDR["b"], ADDR["a"], b"x" * 20)
    key = dp.direction_key("b", "a")
    unknown = seal_wire.seal(packet, key, dp.header(epoch=9, sender=1, cpu=0, seq=1))
    assert counted(dp, "ingress", lambda: dp.ingress(unknown)[0]) == (TC_ACT_SHOT, {"seal_unknown_key_drop"})
    suite = bytearray(seal_wire.seal(packet, key, dp.header(epoch=5, sender=1, cpu=0, seq=1)))
    suite[29] = 3  # no such suite
    assert counted(dp, "ingress", lambda: dp.ingress(bytes(suite))[0]) == (TC_ACT_SHOT, {"seal_malformed_drop"})

    big = udp(ADDR["a"], ADDR["b"], bytes(1473))
    assert counted(dp, "egress", lambda: dp.egress(big)[0]) == (TC_ACT_SHOT, {"seal_too_big_drop"})
    first_fragment = udp(ADDR["a"], ADDR["b"], bytes(100), frag=0x2000)
    assert counted(dp, "egress", lambda: dp.egress(first_fragment)[0]) == (TC_ACT_SHOT, {"seal_too_big_drop"})


def test_without_keys_nothing_leaves_in_plaintext(tmp_path, cipher: str) -> None:
    dp = SealedDatapath.load(str(tmp_path / "state"), cipher=cipher)
    try:
        packet = udp(ADDR["a"], ADDR["b"], b"secret")
        assert counted(dp, "egress", lambda: dp.egress(packet)[0]) == (TC_ACT_SHOT, {"seal_no_key_drop"})
        dp.install({("a", "b"): {"current": (1, pair_key())}})
        assert dp.egress(packet)[0] == TC_ACT_OK
        # A key file without the pair revokes it: fail closed again.
        dp.install({("a", "c"): {"current": (1, pair_key())}})
        assert counted(dp, "egress", lambda: dp.egress(packet)[0]) == (TC_ACT_SHOT, {"seal_no_key_drop"})
        assert dp.egress(udp(ADDR["a"], ADDR["c"], b"still keyed"))[0] == TC_ACT_OK
    finally:
        dp.close()


def test_two_loads_with_one_sender_and_key_seal_in_disjoint_sequence_generations(tmp_path, cipher: str) -> None:
    state = str(tmp_path / "state")
    pairs = {("a", "b"): {"current": (1, pair_key())}}
    first = SealedDatapath.load(state, cipher=cipher)
    second = SealedDatapath.load(state, cipher=cipher)
    try:
        first.install(pairs, sender=555)
        second.install(pairs, sender=555)
        packet = udp(ADDR["a"], ADDR["b"], b"x")
        seqs = []
        for dp in (first, second, first, second):
            retval, sealed = dp.egress(packet)
            assert retval == TC_ACT_OK
            seqs.append(seal_wire.SealHeader.unpack(sealed[seal_wire.Ipv4View.parse(sealed).payload_at:]).seq)
        assert len(set(seqs)) == 4 and seqs[1] >> 32 > seqs[0] >> 32  # the second load's generation is newer
    finally:
        first.close()
        second.close()


def test_aes_generic_build_agrees_with_cryptography(tmp_path) -> None:
    dp = SealedDatapath.load(str(tmp_path / "state"), aes_implementation="aes-generic", cipher="aes-ccm")
    try:
        dp.install({("a", "b"): {"current": (5, pair_key())}})
        for n in (0, 17, 1400):
            packet = udp(ADDR["a"], ADDR["b"], random.randbytes(n))
            retval, sealed = dp.egress(packet)
            assert retval == TC_ACT_OK
            _check_sealed(dp, packet, sealed)
    finally:
        dp.close()


# ------------------------------------------------------------------ suites


def test_a_packet_of_the_other_suite_is_dropped_never_opened(dp) -> None:
    """The receiver opens only its policy's suite, even with the right key for the other one."""
    other = next(s for s in seal_wire.SUITES.values() if s.id != dp.suite.id)
    names = ("a", "b")
    epoch, pk = dp.pair_keys[names]["current"]
    key = seal_wire.direction_key(pk, "b", "a", epoch, other)
    packet = udp(ADDR["b"], ADDR["a"], b"another suite")
    sealed = seal_wire.seal(packet, key, seal_wire.SealHeader(epoch, 77, 0, 1, suite=other.id))
    assert counted(dp, "ingress", lambda: dp.ingress(sealed)[0]) == (TC_ACT_SHOT, {"seal_malformed_drop"})


def test_chacha_sequences_beyond_its_nonce_are_never_opened_or_sealed(tmp_path) -> None:
    dp = SealedDatapath.load(str(tmp_path / "state"), cipher="chacha20-poly1305")
    try:
        dp.install({("a", "b"): {"current": (5, pair_key())}})
        key = dp.direction_key("b", "a")
        packet = udp(ADDR["b"], ADDR["a"], b"late")
        last = seal_wire.CHACHA20_POLY1305.max_seq
        assert dp.ingress(seal_wire.seal(packet, key, dp.header(5, 9, 0, last)))[0] == TC_ACT_OK
        forged = bytearray(seal_wire.seal(packet, key, dp.header(5, 9, 1, last)))
        forged[28 + 8] = 1  # seq's top byte, outside the nonce
        assert counted(dp, "ingress", lambda: dp.ingress(bytes(forged))[0]) == (TC_ACT_SHOT, {"seal_malformed_drop"})
        # A stream at the end of its nonces stops sealing: the next packet would repeat one.
        dp.handles().seq.update(bytes(4), last.to_bytes(8, "little"))
        out = udp(ADDR["a"], ADDR["b"], b"one too many")
        assert counted(dp, "egress", lambda: dp.egress(out)[0]) == (TC_ACT_SHOT, {"seal_no_key_drop"})
    finally:
        dp.close()
