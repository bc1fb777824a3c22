"""Prepare a node's uplink for sealed traffic, and undo it exactly.

The v1 wire format adds SEAL_OVERHEAD bytes to every sealed packet at TC,
so (1) no offload may hand TC a super-packet (GSO/TSO/GRO off, and the
link's gso_max_segs at 1, since TCP does GSO in software regardless) and (2) the
routes through the interface carry an MTU that leaves room for the
overhead. The link MTU stays as it is, so a peer's full-size sealed packet
is still received. What was changed is returned as a record that `restore`
takes back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sealnet.runtime import ethtool
from sealnet.runtime.netns import get_mtu, iproute

SEAL_OVERHEAD = 32  # 16-byte seal header + 16-byte tag (docs/wire-format.md)
RTAX_MTU = "RTAX_MTU"


@dataclass
class RouteChange:
    dst: str  # "198.18.0.0/30" or "default"
    table: int
    previous_mtu: int  # 0: the route had no MTU metric


@dataclass
class InterfaceChange:
    iface: str
    netns: str | None
    offloads_disabled: list[str] = field(default_factory=list)
    routes: list[RouteChange] = field(default_factory=list)
    route_mtu: int = 0
    previous_gso_max_segs: int = 0  # 0: unchanged

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InterfaceChange":
        routes = [RouteChange(**r) for r in data.get("routes", [])]
        return cls(data["iface"], data.get("netns"), list(data.get("offloads_disabled", [])),
                   routes, int(data.get("route_mtu", 0)), int(data.get("previous_gso_max_segs", 0)))


def _route_key(route: Any) -> tuple[str, int, int]:
    dst = route.get_attr("RTA_DST")
    table = route.get_attr("RTA_TABLE") or route["table"]
    return (dst or "default", route["dst_len"], table)


def _metric_mtu(route: Any) -> int:
    metrics = route.get_attr("RTA_METRICS")
    if not metrics:
        return 0
    return int(metrics.get_attr(RTAX_MTU) or 0)


def prepare(iface: str, netns: str | None = None) -> InterfaceChange:
    """Offloads off and route MTUs lowered; raises (after undoing) on failure."""
    change = InterfaceChange(iface, netns)
    try:
        change.offloads_disabled = ethtool.disable_segmentation_offloads(iface, netns=netns)
        change.previous_gso_max_segs = _set_gso_max_segs(iface, netns, 1)
        change.route_mtu = get_mtu(iface, netns=netns) - SEAL_OVERHEAD
        _set_route_mtus(change)
    except Exception:
        restore(change)
        raise
    return change


def _set_gso_max_segs(iface: str, netns: str | None, segs: int) -> int:
    """Set the link's gso_max_segs; returns the previous value.

    TCP builds GSO super-packets whatever the device's offload flags say
    (sk_setup_caps always adds NETIF_F_GSO for TCP) and segments them in
    software only after TC egress. A limit of one segment is what makes
    TCP hand TC one MSS-sized packet at a time, each sealed on its own.
    """
    with iproute(netns) as ipr:
        index = ipr.link_lookup(ifname=iface)[0]
        previous = int(ipr.get_links(index)[0].get_attr("IFLA_GSO_MAX_SEGS") or 0)
        if previous != segs:
            ipr.link("set", index=index, gso_max_segs=segs)
    return previous


def _set_route_mtus(change: InterfaceChange) -> None:
    with iproute(change.netns) as ipr:
        index = ipr.link_lookup(ifname=change.iface)[0]
        for route in ipr.get_routes(family=2, oif=index):
            dst, dst_len, table = _route_key(route)
            if table == 255:  # the local table: addresses of this host, never on the wire
                continue
            previous = _metric_mtu(route)
            target = f"{dst}/{dst_len}" if dst != "default" else "default"
            spec = _route_spec(route, index, dst, dst_len, table)
            ipr.route("replace", **spec, metrics={"mtu": change.route_mtu})
            change.routes.append(RouteChange(target, table, previous))


def _route_spec(route: Any, index: int, dst: str, dst_len: int, table: int) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "dst": dst if dst != "default" else "0.0.0.0", "dst_len": dst_len, "oif": index,
        "table": table, "proto": route["proto"], "scope": route["scope"], "type": route["type"],
    }
    gateway = route.get_attr("RTA_GATEWAY")
    if gateway:
        spec["gateway"] = gateway
    prefsrc = route.get_attr("RTA_PREFSRC")
    if prefsrc:
        spec["prefsrc"] = prefsrc
    priority = route.get_attr("RTA_PRIORITY")
    if priority is not None:
        spec["priority"] = priority
    return spec


def restore(change: InterfaceChange) -> list[str]:
    """Undo what `prepare` did; returns what could not be undone (e.g. link gone)."""
    problems: list[str] = []
    try:
        with iproute(change.netns) as ipr:
            found = ipr.link_lookup(ifname=change.iface)
            if not found:
                return [f"{change.iface}: interface is gone"]
            index = found[0]
            wanted = {(r.dst, r.table): r.previous_mtu for r in change.routes}
            for route in ipr.get_routes(family=2, oif=index):
                dst, dst_len, table = _route_key(route)
                target = f"{dst}/{dst_len}" if dst != "default" else "default"
                if (target, table) not in wanted:
                    continue
                spec = _route_spec(route, index, dst, dst_len, table)
                previous = wanted[(target, table)]
                if previous:
                    ipr.route("replace", **spec, metrics={"mtu": previous})
                else:
                    ipr.route("replace", **spec)
    except Exception as exc:  # restoring is best effort: report, never hide
        problems.append(f"routes: {exc}")
    if change.previous_gso_max_segs and change.previous_gso_max_segs != 1:
        try:
            _set_gso_max_segs(change.iface, change.netns, change.previous_gso_max_segs)
        except Exception as exc:
            problems.append(f"gso_max_segs: {exc}")
    if change.offloads_disabled:
        try:
            ethtool.set_features(change.iface, {n: True for n in change.offloads_disabled}, netns=change.netns)
        except Exception as exc:
            problems.append(f"offloads: {exc}")
    return problems
