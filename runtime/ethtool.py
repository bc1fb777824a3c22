"""Offload toggles (GSO, TSO, GRO, ...) through the ETHTOOL ioctl.

Why: the sealing data plane inserts 32 bytes per packet at TC, which only works
on unsegmented packets, so GSO/TSO/GRO must be off on the sealed interface.

Two interfaces: the legacy ETHTOOL_G/S{GSO,TSO,GRO,...} commands (one bit
group each), and the named netdev features (ETHTOOL_GSTRINGS + G/SFEATURES,
what `ethtool -k/-K` shows). disable_segmentation_offloads() uses the named
features: the legacy TSO switch misses newer segmentation bits (on 6.18
`tx-tcp-accecn-segmentation` stays on), and fail-closed means all of them off.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import struct

from dataclasses import dataclass
from typing import Mapping

from sealnet.runtime.netns import enter, entered

__all__ = [
    "OFFLOADS",
    "EthtoolError",
    "Feature",
    "get_offload",
    "set_offload",
    "features",
    "set_features",
    "disable_segmentation_offloads",
]

SIOCETHTOOL = 0x8946
IFNAMSIZ = 16
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux: name[16] + 24-byte union

# feature -> (get command, set command), from <linux/ethtool.h>
OFFLOADS: dict[str, tuple[int, int]] = {
    "rx-checksum": (0x14, 0x15),
    "tx-checksum": (0x16, 0x17),
    "sg": (0x18, 0x19),
    "tso": (0x1E, 0x1F),
    "gso": (0x23, 0x24),
    "gro": (0x2B, 0x2C),
}


class EthtoolError(Exception):
    def __init__(self, message: str, errno: int = 0) -> None:
        super().__init__(message)
        self.errno = errno


class _EthtoolValue(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint32), ("data", ctypes.c_uint32)]


def _ioctl(ifname: str, cmd: int, data: int, what: str) -> int:
    value = _EthtoolValue(cmd, data)
    _ioctl_buf(ifname, value, what)
    return int(value.data)


def _ioctl_buf(ifname: str, buf: ctypes.Structure | ctypes.Array, what: str) -> None:  # type: ignore[type-arg]
    """SIOCETHTOOL with ifr_data pointing at ``buf`` (which outlives the call)."""
    if not ifname or len(ifname) >= IFNAMSIZ:
        raise ValueError(f"invalid interface name {ifname!r}")
    ifreq = bytearray(struct.pack(f"{IFNAMSIZ}sP", ifname.encode(), ctypes.addressof(buf)))
    ifreq += b"\0" * (_IFREQ_SIZE - len(ifreq))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq, True)
        except OSError as exc:
            code = exc.errno or 0
            raise EthtoolError(
                f"{what} on {ifname!r}: {os.strerror(code)} ({errno.errorcode.get(code, code)})", code
            ) from exc


def _cmds(feature: str) -> tuple[int, int]:
    try:
        return OFFLOADS[feature]
    except KeyError:
        raise ValueError(f"unknown offload {feature!r}; known: {', '.join(sorted(OFFLOADS))}") from None


def get_offload(ifname: str, feature: str, *, netns: str | None = None) -> bool:
    get_cmd, _ = _cmds(feature)
    if netns is None:
        return bool(_ioctl(ifname, get_cmd, 0, f"get {feature}"))
    with enter(netns):  # the ioctl acts in the namespace its socket was made in
        return bool(_ioctl(ifname, get_cmd, 0, f"get {feature}"))


def set_offload(ifname: str, feature: str, on: bool, *, netns: str | None = None) -> None:
    """Set an offload and verify the kernel took it (some drivers fix features)."""
    _, set_cmd = _cmds(feature)
    if netns is None:
        _ioctl(ifname, set_cmd, int(on), f"set {feature}")
    else:
        with enter(netns):
            _ioctl(ifname, set_cmd, int(on), f"set {feature}")
    if get_offload(ifname, feature, netns=netns) != on:
        raise EthtoolError(f"{feature} on {ifname!r} stayed {'off' if on else 'on'} (fixed by the driver)", errno.EOPNOTSUPP)


def disable_segmentation_offloads(ifname: str, *, netns: str | None = None) -> list[str]:
    """Every segmentation and receive-coalescing feature off (GSO, all TSO
    variants, GRO, LRO, ...): each packet the TC program sees is one wire
    packet. Returns the names switched off; raises if one cannot be."""
    active = [f.name for f in features(ifname, netns=netns).values() if _is_segmentation(f.name) and f.active]
    if active:
        set_features(ifname, {name: False for name in active}, netns=netns)
    return active


# --------------------------------------------------------------------------- named features

ETHTOOL_GSTRINGS = 0x1B
ETHTOOL_GSSET_INFO = 0x37
ETHTOOL_GFEATURES = 0x3A
ETHTOOL_SFEATURES = 0x3B
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32

# Every feature that makes the stack hand the device (or the receiver's TC hook)
# a packet that is not one wire packet.
_SEGMENTATION_EXACT = frozenset({"rx-gro", "rx-lro", "rx-gro-list", "rx-udp-gro-forwarding", "rx-gro-hw"})


def _is_segmentation(name: str) -> bool:
    return name in _SEGMENTATION_EXACT or (name.startswith("tx-") and name.endswith("segmentation"))


@dataclass(frozen=True)
class Feature:
    name: str
    bit: int
    available: bool  # changeable by the user
    requested: bool
    active: bool
    never_changed: bool


def _feature_names(ifname: str) -> list[str]:
    class _SsetInfo(ctypes.Structure):
        _fields_ = [("cmd", ctypes.c_uint32), ("reserved", ctypes.c_uint32),
                    ("sset_mask", ctypes.c_uint64), ("data", ctypes.c_uint32 * 1)]

    info = _SsetInfo(ETHTOOL_GSSET_INFO, 0, 1 << ETH_SS_FEATURES)
    _ioctl_buf(ifname, info, "get feature count")
    count = int(info.data[0]) if info.sset_mask & (1 << ETH_SS_FEATURES) else 0

    class _Gstrings(ctypes.Structure):
        _fields_ = [("cmd", ctypes.c_uint32), ("string_set", ctypes.c_uint32), ("len", ctypes.c_uint32),
                    ("data", ctypes.c_uint8 * (count * ETH_GSTRING_LEN))]  # not c_char: that stops at NUL

    strings = _Gstrings(ETHTOOL_GSTRINGS, ETH_SS_FEATURES, count)
    _ioctl_buf(ifname, strings, "get feature names")
    raw = bytes(strings.data)
    return [raw[i * ETH_GSTRING_LEN : (i + 1) * ETH_GSTRING_LEN].split(b"\0", 1)[0].decode() for i in range(count)]


def _features(ifname: str) -> dict[str, Feature]:
    names = _feature_names(ifname)
    blocks = (len(names) + 31) // 32

    class _Block(ctypes.Structure):
        _fields_ = [("available", ctypes.c_uint32), ("requested", ctypes.c_uint32),
                    ("active", ctypes.c_uint32), ("never_changed", ctypes.c_uint32)]

    class _GFeatures(ctypes.Structure):
        _fields_ = [("cmd", ctypes.c_uint32), ("size", ctypes.c_uint32), ("features", _Block * blocks)]

    g = _GFeatures(ETHTOOL_GFEATURES, blocks)
    _ioctl_buf(ifname, g, "get features")
    out: dict[str, Feature] = {}
    for bit, name in enumerate(names):
        if not name:
            continue
        blk, mask = g.features[bit // 32], 1 << (bit % 32)
        out[name] = Feature(name, bit, bool(blk.available & mask), bool(blk.requested & mask),
                            bool(blk.active & mask), bool(blk.never_changed & mask))
    return out


def features(ifname: str, *, netns: str | None = None) -> dict[str, Feature]:
    """The device's named features, as `ethtool -k` lists them."""
    with entered(netns):
        return _features(ifname)


def set_features(ifname: str, wanted: Mapping[str, bool], *, netns: str | None = None) -> None:
    """Set named features and verify the kernel's active state matches."""
    with entered(netns):
        current = _features(ifname)
        unknown = sorted(set(wanted) - set(current))
        if unknown:
            raise ValueError(f"{ifname!r} has no feature(s) {', '.join(unknown)}")
        fixed = sorted(n for n, on in wanted.items() if not current[n].available and current[n].active != on)
        if fixed:
            raise EthtoolError(f"feature(s) {', '.join(fixed)} on {ifname!r} are fixed by the driver", errno.EOPNOTSUPP)
        blocks = (max(f.bit for f in current.values()) // 32) + 1 if current else 0

        class _Block(ctypes.Structure):
            _fields_ = [("valid", ctypes.c_uint32), ("requested", ctypes.c_uint32)]

        class _SFeatures(ctypes.Structure):
            _fields_ = [("cmd", ctypes.c_uint32), ("size", ctypes.c_uint32), ("features", _Block * blocks)]

        req = _SFeatures(ETHTOOL_SFEATURES, blocks)
        for name, on in wanted.items():
            f = current[name]
            if not f.available:
                continue  # already in the wanted state (checked above)
            blk, mask = req.features[f.bit // 32], 1 << (f.bit % 32)
            blk.valid |= mask
            if on:
                blk.requested |= mask
        _ioctl_buf(ifname, req, "set features")
        after = _features(ifname)
    stuck = sorted(n for n, on in wanted.items() if after[n].active != on)
    if stuck:
        raise EthtoolError(f"feature(s) {', '.join(stuck)} on {ifname!r} did not change (dependent features?)", errno.EIO)
