"""What the untrusted network saw: a capture in the wan namespace, audited.

`WanCapture` runs tcpdump on every wan-side veth (inbound only, so each
packet is recorded once, as it leaves a host). `audit` classifies every IPv4
packet by the domains of its addresses (the policy's node CIDRs) and, for a
packet between two different domains, checks its payload:
  sealed     a seal header (docs/wire-format.md) that opens with the pair's
             direction key: authentic ciphertext, not just bytes that look so;
  forged     a seal header that does not open (wrong key, tampered);
  plaintext  a payload that is not sealed at all;
  empty      no payload (a bare TCP ACK/SYN of a flow that is not sealed).
Markers (byte strings the workload is known to carry) are searched in the raw
bytes and in the opened plaintexts: raw hits are leaks, opened hits show the
data did cross, sealed.
"""

from __future__ import annotations

import ipaddress
import signal
import struct
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

from sealnet.compiler.ir import Policy
from sealnet.runtime.cluster.topology import Layout
from sealnet.runtime.seal_keys import KeyFile
from sealnet.runtime.seal_wire import (HEADER_LEN, IPPROTO_TCP, IPPROTO_UDP, SUITES, VERSION, Ipv4View, SealError,
                                       SealHeader, direction_key, open_sealed)

LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
ETH_P_IP = 0x0800
_PCAP_MAGIC = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}


class CaptureError(RuntimeError):
    pass


class WanCapture:
    """tcpdump in the wan namespace; `stop()` flushes it and returns the pcap path."""

    def __init__(self, layout: Layout, path: str, *, ready_timeout: float = 10.0) -> None:
        self.path = path
        self._stderr = path + ".log"
        with open(self._stderr, "wb") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", layout.wan_netns, "tcpdump", "-i", "any", "-Q", "in", "-n", "-s", "0",
                 "-U", "-w", path, "ip"], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + ready_timeout
        while b"listening on" not in self._log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise CaptureError(f"tcpdump in {layout.wan_netns} did not start: {self._log().decode(errors='replace')[-300:]}")
            time.sleep(0.02)

    def _log(self) -> bytes:
        try:
            with open(self._stderr, "rb") as fh:
                return fh.read()
        except OSError:
            return b""

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.path


def read_pcap(path: str) -> Iterator[bytes]:
    """The IPv4 packets of a pcap written on Linux's `any` device."""
    with open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 24:
        return
    order = _PCAP_MAGIC.get(data[:4])
    if order is None:
        raise CaptureError(f"{path}: not a pcap file")
    linktype = struct.unpack_from(order + "I", data, 20)[0]
    header = {LINKTYPE_LINUX_SLL: 16, LINKTYPE_LINUX_SLL2: 20}.get(linktype)
    if header is None:
        raise CaptureError(f"{path}: link type {linktype}, expected Linux cooked capture")
    offset = 24
    while offset + 16 <= len(data):
        _, _, caplen, _ = struct.unpack_from(order + "IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        if len(frame) < header:
            continue
        proto = struct.unpack_from(">H", frame, 0 if linktype == LINKTYPE_LINUX_SLL2 else 14)[0]
        if proto == ETH_P_IP:
            yield frame[header:]


@dataclass
class WanAudit:
    packets: int = 0
    by_pair: dict[str, Counter[str]] = field(default_factory=dict)  # "a->b" -> kind -> packets
    raw_marker_hits: int = 0  # cross-domain packets whose bytes on the wire contain a marker
    opened_marker_hits: int = 0  # sealed packets whose opened plaintext contains a marker
    sealed_payload_bytes: int = 0

    def total(self, kind: str, pairs: Iterable[str] | None = None) -> int:
        return sum(c[kind] for p, c in self.by_pair.items() if pairs is None or p in pairs)


def _domain_of(policy: Policy, addr: bytes) -> str | None:
    d = policy.domain_of(int(ipaddress.IPv4Address(addr)))
    return d.name if d else None


def _pair_keys(key_files: Sequence[KeyFile]) -> dict[frozenset[str], list[tuple[int, bytes]]]:
    keys: dict[frozenset[str], list[tuple[int, bytes]]] = {}
    for kf in key_files:
        for pair in kf.pairs:
            entries = keys.setdefault(frozenset(pair.domains), [])
            for entry in (pair.current, pair.next):
                if entry is not None and (entry[0], bytes(entry[1])) not in entries:
                    entries.append((entry[0], bytes(entry[1])))
    return keys


def audit(packets: Iterable[bytes], policy: Policy, key_files: Sequence[KeyFile],
          markers: Sequence[bytes] = ()) -> WanAudit:
    result = WanAudit()
    keys = _pair_keys(key_files)
    derived: dict[tuple[str, str, int, int], bytes] = {}
    for packet in packets:
        result.packets += 1
        if len(packet) < 20:
            continue
        src, dst = _domain_of(policy, packet[12:16]), _domain_of(policy, packet[16:20])
        if src is None or dst is None or src == dst:
            continue
        counts = result.by_pair.setdefault(f"{src}->{dst}", Counter())
        try:
            view = Ipv4View.parse(packet)
        except SealError:
            counts["malformed"] += 1
            continue
        payload = packet[view.payload_at : view.total] if view.proto in (IPPROTO_TCP, IPPROTO_UDP) else b""
        if view.proto not in (IPPROTO_TCP, IPPROTO_UDP):
            counts["other"] += 1
            continue
        if not payload:
            counts["empty"] += 1
            continue
        if any(m in packet for m in markers):
            result.raw_marker_hits += 1
        header = SealHeader.unpack(payload) if len(payload) >= HEADER_LEN else None
        if header is None or header.version != VERSION or header.suite not in SUITES:
            counts["plaintext"] += 1
            continue
        opened = None
        for epoch, pair_key in keys.get(frozenset((src, dst)), []):
            if epoch % 256 != header.epoch:
                continue
            k = (src, dst, epoch, header.suite)
            if k not in derived:
                derived[k] = direction_key(pair_key, src, dst, epoch, SUITES[header.suite])
            try:
                _, opened = open_sealed(packet, derived[k], frozenset({header.suite}))
                break
            except SealError:
                continue
        if opened is None:
            counts["forged"] += 1
            continue
        counts["sealed"] += 1
        result.sealed_payload_bytes += len(payload)
        if any(m in opened for m in markers):
            result.opened_marker_hits += 1
    return result

