"""IPv4 test packets with valid checksums, for sealing tests, benchmarks and demos (no Ethernet header)."""

from __future__ import annotations

import struct

from sealnet.runtime.seal_wire import Ipv4View, internet_checksum, l4_checksum

ETH = bytes.fromhex("020000000002" "020000000001") + b"\x08\x00"  # any unicast pair, IPv4


def _addr(text: str) -> bytes:
    return bytes(map(int, text.split(".")))


def _ip(src: str, dst: str, proto: int, body_len: int, *, ident: int = 1, frag: int = 0x4000) -> bytearray:
    ip = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + body_len, ident, frag, 64, proto, 0,
                               _addr(src), _addr(dst)))
    ip[10:12] = internet_checksum(bytes(ip)).to_bytes(2, "big")
    return ip


def udp(src: str, dst: str, payload: bytes, sport: int = 40000, dport: int = 7000, **ip_kw: int) -> bytes:
    ip = _ip(src, dst, 17, 8 + len(payload), **ip_kw)
    seg = bytearray(struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload)
    seg[6:8] = (l4_checksum(bytes(ip[12:16]), bytes(ip[16:20]), 17, bytes(seg)) or 0xFFFF).to_bytes(2, "big")
    return bytes(ip + seg)


def tcp(src: str, dst: str, payload: bytes, sport: int = 40000, dport: int = 7000, options: bytes = b"") -> bytes:
    """A TCP segment (ACK|PSH) with `options` padded to 4 bytes."""
    options = options + bytes(-len(options) % 4)
    doff = (20 + len(options)) // 4
    ip = _ip(src, dst, 6, 20 + len(options) + len(payload))
    seg = bytearray(struct.pack(">HHIIBBHHH", sport, dport, 1000, 2000, doff << 4, 0x18, 65535, 0, 0)
                    + options + payload)
    seg[16:18] = l4_checksum(bytes(ip[12:16]), bytes(ip[16:20]), 6, bytes(seg)).to_bytes(2, "big")
    return bytes(ip + seg)


def icmp_echo(src: str, dst: str, payload: bytes) -> bytes:
    body = bytearray(struct.pack(">BBHHH", 8, 0, 0, 7, 1) + payload)
    body[2:4] = internet_checksum(bytes(body)).to_bytes(2, "big")
    return bytes(_ip(src, dst, 1, len(body)) + body)


def checksums_valid(packet: bytes) -> bool:
    view = Ipv4View.parse(packet)
    if internet_checksum(packet[:view.ihl]) != 0:
        return False
    if view.proto in (6, 17):
        if view.proto == 17 and packet[view.ihl + 6:view.ihl + 8] == b"\0\0":
            return True
        return l4_checksum(packet[12:16], packet[16:20], view.proto, packet[view.ihl:view.total]) == 0
    return True


def icmp_error(src: str, dst: str, quoted: bytes, icmp_type: int = 3, code: int = 3) -> bytes:
    """An ICMP error from src to dst quoting `quoted` (an IPv4 packet), as a kernel sends it
    (default: destination unreachable, port unreachable)."""
    ip = _ip(src, dst, 1, 8 + len(quoted))
    body = bytearray(bytes([icmp_type, code, 0, 0, 0, 0, 0, 0]) + quoted)
    body[2:4] = internet_checksum(bytes(body)).to_bytes(2, "big")
    return bytes(ip + body)
