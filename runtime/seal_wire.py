"""The sealed-packet format v1 (docs/wire-format.md) in Python, with `cryptography`.

An independent implementation of the format: the tests hold the eBPF data
plane to it byte for byte (a packet the kernel seals opens here and the
other way round), and it is what a third party's decoder would look like.
It works on IPv4 packets without the Ethernet header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealnet.contracts import abi

# The format's numbers are the data plane's (contracts/abi.py, checked against its BTF).
VERSION = abi.SEAL_VERSION
SUITE_AES_128_CCM = int(abi.SealSuite.AES_128_CCM)
SUITE_CHACHA20_POLY1305 = int(abi.SealSuite.CHACHA20_POLY1305)
HEADER_LEN = abi.SEAL_HDR_LEN
TAG_LEN = abi.SEAL_TAG_LEN
OVERHEAD = abi.SEAL_OVERHEAD
NONCE_SLICE = abi.SEAL_NONCE
PAIR_KEY_LEN = 32
DIRECTION_KEY_LEN = 16  # AES-128-CCM's; each suite's is Suite.key_len
KDF_SALT = b"sealnet/v1"
KDF_LABEL = b"sealnet/v1 aes-128-ccm "
WINDOW_WORDS = abi.SEAL_REPLAY_WORDS
WINDOW = abi.SEAL_REPLAY_WINDOW  # sequences below top that can still be accepted
IPPROTO_TCP, IPPROTO_UDP = 6, 17
IP_MF, IP_OFFSET = 0x2000, 0x1FFF


@dataclass(frozen=True)
class Suite:
    """One AEAD of the format: its id in the seal header, its name in a policy, its keys and nonce."""

    id: int
    name: str
    key_len: int
    kdf_label: bytes
    max_seq: int  # the largest sequence whose nonce is still unique

    def aead(self, key: bytes) -> AESCCM | ChaCha20Poly1305:
        if len(key) != self.key_len:
            raise ValueError(f"a {self.name} key is {self.key_len} bytes, not {len(key)}")
        if self.id == SUITE_CHACHA20_POLY1305:
            return ChaCha20Poly1305(key)
        return AESCCM(key, tag_length=TAG_LEN)

    def nonce(self, header: bytes) -> bytes:
        """AES-CCM: header bytes 3..15 (13). ChaCha20-Poly1305: bytes 3..7 and 9..15 (12), byte 8 being 0."""
        if self.id == SUITE_CHACHA20_POLY1305:
            return header[3:8] + header[9:16]
        return header[NONCE_SLICE]


AES_128_CCM = Suite(SUITE_AES_128_CCM, "aes-ccm", 16, KDF_LABEL, 2**64 - 1)
CHACHA20_POLY1305 = Suite(SUITE_CHACHA20_POLY1305, "chacha20-poly1305", 32, b"sealnet/v1 chacha20-poly1305 ",
                          2**56 - 1)
SUITES = {s.id: s for s in (AES_128_CCM, CHACHA20_POLY1305)}
SUITE_BY_NAME = {s.name: s for s in SUITES.values()}


class SealError(ValueError):
    """Not a valid sealed packet; `reason` is the data plane's drop counter name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def direction_key(pair_key: bytes, src_domain: str, dst_domain: str, epoch: int, suite: Suite = AES_128_CCM) -> bytes:
    """K(src→dst, epoch): the key of one direction for one suite, from the pair key."""
    if len(pair_key) != PAIR_KEY_LEN:
        raise ValueError(f"a pair key is {PAIR_KEY_LEN} bytes, not {len(pair_key)}")
    info = suite.kdf_label + src_domain.encode() + b"\0" + dst_domain.encode() + b"\0" + bytes([epoch % 256])
    return HKDF(algorithm=hashes.SHA384(), length=suite.key_len, salt=KDF_SALT, info=info).derive(pair_key)


@dataclass(frozen=True)
class SealHeader:
    epoch: int
    sender: int
    cpu: int
    seq: int
    version: int = VERSION
    suite: int = SUITE_AES_128_CCM

    def pack(self) -> bytes:
        return struct.pack(">BBBIBQ", self.version, self.suite, self.epoch % 256, self.sender, self.cpu, self.seq)

    @classmethod
    def unpack(cls, data: bytes) -> SealHeader:
        version, suite, epoch, sender, cpu, seq = struct.unpack(">BBBIBQ", data[:HEADER_LEN])
        return cls(epoch=epoch, sender=sender, cpu=cpu, seq=seq, version=version, suite=suite)

    @property
    def nonce(self) -> bytes:
        return SUITES[self.suite].nonce(self.pack())


# --------------------------------------------------------------------- checksums


def ones_complement_sum(data: bytes, start: int = 0) -> int:
    if len(data) % 2:
        data += b"\0"
    total = start + sum(struct.unpack(f">{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def internet_checksum(data: bytes, start: int = 0) -> int:
    return ~ones_complement_sum(data, start) & 0xFFFF


def _ip_checksum(packet: bytearray, ihl: int) -> None:
    packet[10:12] = b"\0\0"
    packet[10:12] = internet_checksum(bytes(packet[:ihl])).to_bytes(2, "big")


def l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    pseudo = src + dst + bytes([0, proto]) + len(segment).to_bytes(2, "big")
    return internet_checksum(pseudo + segment)


# --------------------------------------------------------------------- packets


@dataclass(frozen=True)
class Ipv4View:
    """Offsets of one IPv4 packet's parts, as the format defines them."""

    ihl: int
    proto: int
    l4_len: int
    total: int

    @classmethod
    def parse(cls, packet: bytes) -> Ipv4View:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            raise SealError("seal_malformed_drop", "not an IPv4 packet")
        ihl = (packet[0] & 0x0F) * 4
        total = int.from_bytes(packet[2:4], "big")
        if ihl < 20 or total < ihl or total > len(packet):
            raise SealError("seal_malformed_drop", "bad IPv4 header or total length")
        proto = packet[9]
        l4_len = 0
        if proto == IPPROTO_UDP:
            l4_len = 8
        elif proto == IPPROTO_TCP:
            if total < ihl + 20:
                raise SealError("seal_malformed_drop", "truncated TCP header")
            l4_len = (packet[ihl + 12] >> 4) * 4
            if l4_len < 20:
                raise SealError("seal_malformed_drop", "bad TCP data offset")
        if total < ihl + l4_len:
            raise SealError("seal_malformed_drop", "truncated L4 header")
        return cls(ihl=ihl, proto=proto, l4_len=l4_len, total=total)

    @property
    def payload_at(self) -> int:
        return self.ihl + self.l4_len

    @property
    def checksum_at(self) -> int | None:
        """Offset of the L4 checksum field in the packet (None: not in clear)."""
        return {IPPROTO_TCP: self.ihl + 16, IPPROTO_UDP: self.ihl + 6}.get(self.proto)


def associated_data(packet: bytes, view: Ipv4View, header: bytes) -> bytes:
    l4 = bytearray(packet[view.ihl:view.payload_at])
    if view.checksum_at is not None:
        at = view.checksum_at - view.ihl
        l4[at:at + 2] = b"\0\0"
    return packet[12:16] + packet[16:20] + bytes([0, view.proto]) + bytes(l4) + header


def _fix_lengths_and_checksums(packet: bytearray, view: Ipv4View, old_udp_checksum: int | None) -> None:
    _ip_checksum(packet, view.ihl)
    at = view.checksum_at
    if at is None:
        return
    if view.proto == IPPROTO_UDP:
        packet[view.ihl + 4:view.ihl + 6] = (len(packet) - view.ihl).to_bytes(2, "big")
        if old_udp_checksum == 0:
            return  # "no checksum" stays so
    packet[at:at + 2] = b"\0\0"
    value = l4_checksum(bytes(packet[12:16]), bytes(packet[16:20]), view.proto, bytes(packet[view.ihl:]))
    if view.proto == IPPROTO_UDP and value == 0:
        value = 0xFFFF
    packet[at:at + 2] = value.to_bytes(2, "big")


def _resize(packet: bytes, view: Ipv4View, new_total: int) -> bytearray:
    out = bytearray(packet[:view.payload_at])
    out[2:4] = new_total.to_bytes(2, "big")
    return out


def seal(packet: bytes, key: bytes, header: SealHeader) -> bytes:
    """The sealed form of an IPv4 packet (no Ethernet header), as the sender's data plane makes it."""
    view = Ipv4View.parse(packet)
    frag = int.from_bytes(packet[6:8], "big")
    if frag & (IP_MF | IP_OFFSET):
        raise SealError("seal_too_big_drop", "fragments are never sealed")
    payload = packet[view.payload_at:view.total]
    old_udp = int.from_bytes(packet[view.ihl + 6:view.ihl + 8], "big") if view.proto == IPPROTO_UDP else None
    out = _resize(packet, view, view.total + OVERHEAD)
    if view.proto == IPPROTO_UDP:
        out[view.ihl + 4:view.ihl + 6] = (view.total + OVERHEAD - view.ihl).to_bytes(2, "big")
    suite = SUITES.get(header.suite)
    if suite is None:
        raise ValueError(f"unknown suite {header.suite}")
    if header.seq > suite.max_seq:
        raise SealError("seal_no_key_drop", f"sequence {header.seq} above {suite.max_seq}: the nonces are spent")
    head = header.pack()
    aad = associated_data(bytes(out), view, head)
    out += head + suite.aead(key).encrypt(header.nonce, payload, aad)
    _fix_lengths_and_checksums(out, view, old_udp)
    return bytes(out)


def open_sealed(packet: bytes, key: bytes, suites: frozenset[int] | None = None) -> tuple[SealHeader, bytes]:
    """(seal header, original IPv4 packet) of a sealed packet; SealError names the drop reason.

    `suites`: the suite ids the receiver's policy allows for this pair (None: any
    the format defines); `key` is the direction's key for the packet's suite.
    """
    view = Ipv4View.parse(packet)
    if int.from_bytes(packet[6:8], "big") & (IP_MF | IP_OFFSET):
        raise SealError("seal_malformed_drop", "a sealed packet is never a fragment")
    sealed = packet[view.payload_at:view.total]
    if len(sealed) < OVERHEAD or sealed[0] != VERSION:
        raise SealError("seal_plaintext_drop", "no seal header")
    header = SealHeader.unpack(sealed)
    suite = SUITES.get(header.suite)
    if suite is None or (suites is not None and suite.id not in suites):
        raise SealError("seal_malformed_drop", f"suite {header.suite} is not accepted here")
    if header.seq > suite.max_seq:
        raise SealError("seal_malformed_drop", f"sequence {header.seq} beyond the suite's nonces")
    aad = associated_data(packet, view, sealed[:HEADER_LEN])
    try:
        payload = suite.aead(key).decrypt(header.nonce, sealed[HEADER_LEN:], aad)
    except InvalidTag:
        raise SealError("seal_bad_tag_drop", "the tag does not verify") from None
    old_udp = int.from_bytes(packet[view.ihl + 6:view.ihl + 8], "big") if view.proto == IPPROTO_UDP else None
    out = _resize(packet, view, view.total - OVERHEAD)
    out += payload
    _fix_lengths_and_checksums(out, view, old_udp)
    return header, bytes(out)


class ReplayWindow:
    """The per-stream anti-replay window of docs/wire-format.md, for reference and tests."""

    def __init__(self) -> None:
        self.top = 0
        self.ring = [0] * WINDOW_WORDS

    def check(self, seq: int) -> bool:
        if seq == 0 or seq + WINDOW <= self.top:
            return False
        if seq > self.top:
            return True
        return not (self.ring[(seq >> 6) % WINDOW_WORDS] >> (seq & 63)) & 1

    def accept(self, seq: int) -> bool:
        if not self.check(seq):
            return False
        if seq > self.top:
            current, new = self.top >> 6, seq >> 6
            for i in range(1, min(new - current, WINDOW_WORDS) + 1):
                self.ring[(current + i) % WINDOW_WORDS] = 0
            self.top = seq
        self.ring[(seq >> 6) % WINDOW_WORDS] |= 1 << (seq & 63)
        return True
