"""Test hosts: namespaces and veth pairs for one test, and the UDP helpers
tests, benchmarks and demos share. Not part of the product (the node never
builds test topologies); the primitives it uses live in sealnet.runtime.netns.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Callable

from sealnet.runtime.netns import (add_address, add_veth, create_netns, delete_link, delete_netns, ifindex,
                                   iproute, run_in_netns, set_mtu, set_up)

# <linux/socket.h> and <linux/if_packet.h>; Python's socket module names neither.
SOL_PACKET = 263
PACKET_QDISC_BYPASS = 20
ETH_P_ALL = 0x0003
AF_XDP = 44


_bpf_lsm_reason: list[str | None] = []


def bpf_lsm_unavailable_reason() -> str | None:
    """None when this host runs the bypass guard (runtime/node_guard.py); probed once."""
    if not _bpf_lsm_reason:
        if os.geteuid() != 0:
            _bpf_lsm_reason.append("the bypass guard needs root")
        else:
            from sealnet.runtime import node_guard

            _bpf_lsm_reason.append(node_guard.unavailable_reason())
    return _bpf_lsm_reason[0]


def udp_socket(ip: str, port: int, timeout: float = 2.0) -> socket.socket:
    """A UDP socket bound to (ip, port) with a receive timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, port))
    s.settimeout(timeout)
    return s


def echo(sock: socket.socket, stop: threading.Event, *, max_packets: int | None = None) -> None:
    """Send every datagram back to its sender until `stop` (or `max_packets` echoed)."""
    sock.settimeout(0.2)
    echoed = 0
    while not stop.is_set() and (max_packets is None or echoed < max_packets):
        try:
            data, peer = sock.recvfrom(65535)
        except socket.timeout:
            continue
        except OSError:
            return  # the socket was closed under us: the caller is done
        sock.sendto(data, peer)
        echoed += 1


def send_udp(dst: str, port: int, payloads: list[bytes]) -> None:
    """Send each payload as one datagram to (dst, port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, (dst, port))


def received(ns: str, ip: str, port: int, send: Callable[[], object], count: int,
             timeout: float = 0.5) -> list[bytes]:
    """Run `send()` and return what a UDP socket bound to (ip, port) in `ns` received:
    at most `count` datagrams, each waited for at most `timeout` seconds."""
    rx = run_in_netns(ns, udp_socket, ip, port, timeout)
    try:
        send()
        got = []
        for _ in range(count):
            try:
                got.append(rx.recv(4096))
            except socket.timeout:
                break
        return got
    finally:
        rx.close()


def tap(iface: str, timeout: float = 2.0, *, rcvbuf: int | None = None) -> socket.socket:
    """A packet socket that sees every frame on `iface` (ETH_P_ALL taps see a
    frame before the TC ingress program opens it; single-protocol taps after)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((iface, 0))
    s.settimeout(timeout)
    return s


def inject(iface: str, frames: list[bytes], *, qdisc_bypass: bool = True) -> None:
    """Send raw frames out of `iface`: past the qdisc and so past its TC egress program, or
    (qdisc_bypass=False) through both, as any packet socket without the option does. In a
    namespace with a sealing data plane the bypass is refused (PermissionError)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        if qdisc_bypass:
            s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        s.bind((iface, 0))
        for f in frames:
            s.send(f)


def qdisc_bypass_socket() -> socket.socket:
    """A packet socket with PACKET_QDISC_BYPASS set (PermissionError where the bypass guard refuses)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    try:
        s.setsockopt(SOL_PACKET, PACKET_QDISC_BYPASS, 1)
    except BaseException:
        s.close()
        raise
    return s


def xdp_socket() -> socket.socket:
    """An AF_XDP socket, unbound (PermissionError where the bypass guard refuses)."""
    return socket.socket(AF_XDP, socket.SOCK_RAW, 0)


class Capture:
    """The frames arriving on an interface, read by a packet socket on a thread (bounded by `seconds`)."""

    def __init__(self, ns: str, iface: str, seconds: float = 20.0) -> None:
        self.sock = run_in_netns(ns, tap, iface, 0.2, rcvbuf=8 << 20)
        self.frames: list[bytes] = []
        self.deadline = time.monotonic() + seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            try:
                frame, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr[2] != socket.PACKET_OUTGOING:
                self.frames.append(frame)

    def stop(self) -> list[bytes]:
        time.sleep(0.2)  # let the last frames in flight arrive
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()
        return self.frames


def udp_frames_to(frames: list[bytes], port: int) -> list[bytes]:
    """The IPv4 UDP frames (Ethernet header included) addressed to `port`."""
    return [f for f in frames if f[12:14] == b"\x08\x00" and f[23] == 17 and int.from_bytes(f[36:38], "big") == port]


@dataclass(frozen=True)
class Veth:
    """One veth pair: ``a`` end in ``ns_a`` with ``addr_a``, ``b`` end in ``ns_b``."""

    a: str
    b: str
    ns_a: str | None
    ns_b: str | None
    addr_a: str | None
    addr_b: str | None

    @property
    def ip_a(self) -> str | None:
        return str(ipaddress.ip_interface(self.addr_a).ip) if self.addr_a else None

    @property
    def ip_b(self) -> str | None:
        return str(ipaddress.ip_interface(self.addr_b).ip) if self.addr_b else None

    def ifindex_a(self) -> int:
        return ifindex(self.a, self.ns_a)

    def ifindex_b(self) -> int:
        return ifindex(self.b, self.ns_b)


@dataclass(frozen=True)
class OnPath:
    """a -- w -- b: two hosts in one subnet, and between them an on-path attacker's namespace
    `ns_w` whose bridge joins its two veth ends; `w_to_a` and `w_to_b` are those ends."""

    ns_a: str
    ns_w: str
    ns_b: str
    if_a: str
    if_b: str
    w_to_a: str
    w_to_b: str


@dataclass
class Topology:
    """Namespaces and veths for one test; everything is deleted on exit.

    Namespace and interface names carry a random per-topology id, so parallel
    test workers never collide. Prefer keeping both veth ends inside namespaces:
    then the host namespace never sees test addresses.
    """

    id: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    host_links: list[str] = field(default_factory=list)
    _counter: int = 0

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def netns(self, label: str = "") -> str:
        """Create a namespace named sn-<id>-<n>[-label] (loopback up)."""
        name = f"sn-{self.id}-{self._next()}" + (f"-{label}" if label else "")
        # Record before creating: a half-created namespace must still be removed.
        self.namespaces.append(name)
        create_netns(name)
        return name

    def veth(
        self,
        ns_a: str | None,
        ns_b: str | None,
        addr_a: str | None = None,
        addr_b: str | None = None,
        *,
        mtu: int | None = None,
    ) -> Veth:
        """A veth pair between two namespaces (None: host), addressed and up."""
        n = self._next()
        a, b = f"sn{self.id}v{n}a", f"sn{self.id}v{n}b"
        if ns_a is None:
            self.host_links.append(a)
        if ns_b is None:
            self.host_links.append(b)
        add_veth(a, b, netns=ns_a, peer_netns=ns_b)
        for ifname, ns, addr in ((a, ns_a, addr_a), (b, ns_b, addr_b)):
            if mtu is not None:
                set_mtu(ifname, mtu, netns=ns)
            if addr is not None:
                add_address(ifname, addr, netns=ns)
            set_up(ifname, netns=ns)
        return Veth(a, b, ns_a, ns_b, addr_a, addr_b)

    def pair(self, subnet: str = "198.18.0.0/30", *, mtu: int | None = None) -> tuple[str, str, Veth]:
        """Two fresh namespaces joined by one veth on ``subnet`` (.1 and .2)."""
        net = ipaddress.ip_network(subnet)
        hosts = list(net.hosts()) if net.num_addresses <= 256 else [net[1], net[2]]
        ns_a, ns_b = self.netns("a"), self.netns("b")
        veth = self.veth(
            ns_a, ns_b, f"{hosts[0]}/{net.prefixlen}", f"{hosts[1]}/{net.prefixlen}", mtu=mtu
        )
        return ns_a, ns_b, veth

    def on_path(self, subnet: str = "198.18.0.0/30", *, mtu: int | None = None) -> OnPath:
        """Hosts .1 (a) and .2 (b) of ``subnet``, joined through a bridge in a third namespace
        (w): what crosses the wire between them crosses w, where an attacker captures and injects."""
        net = ipaddress.ip_network(subnet)
        ns_a, ns_w, ns_b = self.netns("a"), self.netns("w"), self.netns("b")
        to_a = self.veth(ns_a, ns_w, f"{net[1]}/{net.prefixlen}", None, mtu=mtu)
        to_b = self.veth(ns_b, ns_w, f"{net[2]}/{net.prefixlen}", None, mtu=mtu)
        bridge = f"sn{self.id}br{self._next()}"
        with iproute(ns_w) as ipr:
            ipr.link("add", ifname=bridge, kind="bridge")
            (br,) = ipr.link_lookup(ifname=bridge)
            for port in (to_a.b, to_b.b):
                ipr.link("set", index=ipr.link_lookup(ifname=port)[0], master=br)
            ipr.link("set", index=br, state="up")
        return OnPath(ns_a, ns_w, ns_b, to_a.a, to_b.a, to_a.b, to_b.b)

    def close(self) -> None:
        """Delete everything created; keeps going past individual failures and
        raises the first one at the end."""
        first: BaseException | None = None
        for link in reversed(self.host_links):
            try:
                delete_link(link)
            except Exception as exc:
                first = first or exc
        self.host_links.clear()
        for name in reversed(self.namespaces):
            try:
                delete_netns(name)
            except Exception as exc:
                first = first or exc
        self.namespaces.clear()
        if first is not None:
            raise first

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception:
            pass  # the body's exception is the one worth seeing


def udp_packets_to(frames: list[bytes], port: int) -> list[bytes]:
    """The IPv4 packets (Ethernet header removed) of the UDP frames addressed to `port`."""
    return [f[14:] for f in udp_frames_to(frames, port)]
