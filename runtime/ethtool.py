"""Named netdev features (what `ethtool -k/-K` shows and sets), through pyroute2.

Why: the sealing data plane inserts 32 bytes per packet at TC, which only works
on unsegmented packets, so every segmentation and receive-coalescing feature
must be off on the sealed interface. disable_segmentation_offloads() switches
off every named feature of that kind: the legacy TSO switch misses newer
segmentation bits (on 6.18 `tx-tcp-accecn-segmentation` stays on), and fail
closed means all of them off.
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping

from pyroute2.ethtool import Ethtool

from sealnet.contracts.errors import OsCallError
from sealnet.runtime.netns import entered

__all__ = ["EthtoolError", "Feature", "features", "set_features", "disable_segmentation_offloads"]


class EthtoolError(OsCallError):
    """An ethtool request failed or did not take effect; the message names the interface."""


@dataclass(frozen=True)
class Feature:
    name: str
    available: bool  # changeable by the user
    active: bool


# Every feature that makes the stack hand the device (or the receiver's TC hook)
# a packet that is not one wire packet.
_SEGMENTATION_EXACT = frozenset({"rx-gro", "rx-lro", "rx-gro-list", "rx-udp-gro-forwarding", "rx-gro-hw"})


def _is_segmentation(name: str) -> bool:
    return name in _SEGMENTATION_EXACT or (name.startswith("tx-") and name.endswith("segmentation"))


@contextmanager
def _ethtool(ifname: str, netns: str | None, what: str) -> Iterator[Ethtool]:
    """An Ethtool whose socket lives in `netns` (ioctls act in their socket's namespace)."""
    with entered(netns):
        tool = Ethtool()
    try:
        yield tool
    except OSError as exc:
        code = exc.errno or 0
        raise EthtoolError(f"{what} on {ifname!r}: {os.strerror(code)} ({errno.errorcode.get(code, code)})",
                           code) from exc
    finally:
        tool.close()


def _read(tool: Ethtool, ifname: str) -> dict[str, Feature]:
    return {name: Feature(name, bool(f.available), bool(f.enable))
            for name, f in tool.get_features(ifname).features.items() if name}


def features(ifname: str, *, netns: str | None = None) -> dict[str, Feature]:
    """The device's named features, as `ethtool -k` lists them."""
    with _ethtool(ifname, netns, "get features") as tool:
        return _read(tool, ifname)


def set_features(ifname: str, wanted: Mapping[str, bool], *, netns: str | None = None) -> None:
    """Set named features and verify the kernel's active state matches."""
    with _ethtool(ifname, netns, "set features") as tool:
        request = tool.get_features(ifname)
        current = {name: f for name, f in request.features.items() if name}
        unknown = sorted(set(wanted) - set(current))
        if unknown:
            raise ValueError(f"{ifname!r} has no feature(s) {', '.join(unknown)}")
        fixed = sorted(n for n, on in wanted.items() if not current[n].available and bool(current[n].enable) != on)
        if fixed:
            raise EthtoolError(f"feature(s) {', '.join(fixed)} on {ifname!r} are fixed by the driver", errno.EOPNOTSUPP)
        for name, on in wanted.items():
            current[name].enable = on
        tool.set_features(ifname, request)
        after = _read(tool, ifname)
    stuck = sorted(n for n, on in wanted.items() if after[n].active != on)
    if stuck:
        raise EthtoolError(f"feature(s) {', '.join(stuck)} on {ifname!r} did not change (dependent features?)", errno.EIO)


def active_segmentation_offloads(ifname: str, *, netns: str | None = None) -> list[str]:
    """The segmentation and receive-coalescing features that are on now."""
    return [f.name for f in features(ifname, netns=netns).values() if _is_segmentation(f.name) and f.active]


def disable_segmentation_offloads(ifname: str, *, netns: str | None = None) -> list[str]:
    """Every segmentation and receive-coalescing feature off (GSO, all TSO
    variants, GRO, LRO, ...): each packet the TC program sees is one wire
    packet. Returns the names switched off; raises if one cannot be."""
    active = active_segmentation_offloads(ifname, netns=netns)
    if active:
        set_features(ifname, {name: False for name in active}, netns=netns)
    return active
