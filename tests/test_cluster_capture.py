"""The wan audit: packets classified by domain pair, seals opened with the pair
key (a forged one is not counted as sealed), markers found only where they
are in the clear; pcap reading of Linux cooked captures."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from sealnet.compiler.frontend import load_policy
import packets
from sealnet.runtime.cluster import capture
from sealnet.runtime.seal_keys import format_key_file, parse_key_file
from sealnet.runtime.seal_wire import AES_128_CCM, CHACHA20_POLY1305, SealHeader, direction_key, seal

ROOT = Path(__file__).resolve().parent.parent
MARKER = b"ACGTTGCAACGTTGCAACGTTGCA"


def _policy():
    policy, _ = load_policy(str(ROOT / "examples" / "genomics.policy"))
    assert policy is not None
    return policy


def _keys(pair_key: bytes):
    return parse_key_file(format_key_file(None, {("hospital", "lab"): {"current": (1, pair_key)}}))


def _sealed(src: str, dst: str, payload: bytes, pair_key: bytes, src_dom: str, dst_dom: str, suite=CHACHA20_POLY1305,
            seq: int = 1) -> bytes:
    key = direction_key(pair_key, src_dom, dst_dom, 1, suite)
    return seal(packets.tcp(src, dst, payload, dport=7001), key,
                SealHeader(epoch=1, sender=7, cpu=0, seq=seq, suite=suite.id))


def test_audit_opens_seals_and_finds_leaks() -> None:
    pair_key = os.urandom(32)
    data = b"reads:" + MARKER * 3
    wire = [
        _sealed("198.18.1.2", "198.18.2.2", data, pair_key, "hospital", "lab"),
        _sealed("198.18.2.2", "198.18.1.2", data, pair_key, "lab", "hospital", AES_128_CCM, 2),
        # sealed with another key: looks sealed, is not authentic
        _sealed("198.18.1.2", "198.18.2.2", data, os.urandom(32), "hospital", "lab", seq=3),
        packets.tcp("198.18.1.3", "198.18.2.3", data, dport=7001),  # a leak
        packets.tcp("198.18.1.2", "198.18.1.3", data, dport=7000),  # same domain: not audited
        packets.tcp("198.18.9.2", "198.18.1.2", b"", dport=7002),  # public SYN, no payload
    ]
    result = capture.audit(wire, _policy(), [_keys(pair_key)], [MARKER])
    assert result.packets == 6
    assert result.by_pair["hospital->lab"] == {"sealed": 1, "forged": 1, "plaintext": 1}
    assert result.by_pair["lab->hospital"] == {"sealed": 1}
    assert result.by_pair["public->hospital"] == {"empty": 1}
    assert "hospital->hospital" not in result.by_pair
    assert result.raw_marker_hits == 1  # only the plaintext one shows the marker on the wire
    assert result.opened_marker_hits == 2
    assert result.total("sealed", {"hospital->lab", "lab->hospital"}) == 2


def _pcap(frames: list[bytes], linktype: int) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for frame in frames:
        out += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    return out


def test_read_pcap_of_cooked_captures(tmp_path: Path) -> None:
    ip = packets.tcp("198.18.1.2", "198.18.2.2", b"x", dport=7001)
    sll = struct.pack(">HHH8sH", 0, 1, 6, b"\0" * 8, 0x0800) + ip
    sll_arp = struct.pack(">HHH8sH", 0, 1, 6, b"\0" * 8, 0x0806) + b"\0" * 28
    sll2 = struct.pack(">HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\0" * 8) + ip
    (tmp_path / "a.pcap").write_bytes(_pcap([sll, sll_arp], capture.LINKTYPE_LINUX_SLL))
    (tmp_path / "b.pcap").write_bytes(_pcap([sll2], capture.LINKTYPE_LINUX_SLL2))
    assert list(capture.read_pcap(str(tmp_path / "a.pcap"))) == [ip]
    assert list(capture.read_pcap(str(tmp_path / "b.pcap"))) == [ip]
