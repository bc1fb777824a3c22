"""Prepare a node's uplink for sealed traffic, and undo it exactly.

The v1 wire format adds SEAL_OVERHEAD bytes to every sealed packet at TC,
so (1) no offload may hand TC a super-packet (GSO/TSO/GRO off, and the
link's gso_max_segs at 1, since TCP does GSO in software regardless) and (2) the
routes through the interface carry an MTU that leaves room for the
overhead. The link MTU stays as it is, so a peer's full-size sealed packet
is still received. What was changed is returned as a record that `restore`
takes back.

One wire segment per skb is what collapsed TCP (0.3-0.4 Gbit/s plaintext over
veth, thousands of retransmits). The cause, measured: TCP paces BBR flows
itself (no fq qdisc) with an hrtimer per transmitted skb; at one segment per
skb the timer rate bounds the flow (tcp_pace_kick fired ~35k/s for ~37k
segments/s: 0.4 Gbit/s), and the segments the timer sends from softirq on
the other CPU enter that CPU's backlog (veth has no hardware queues) and
overtake those sent from the process: out-of-order queue, a DSACK for nearly
every retransmit (all spurious). The routes through the uplink therefore name
a congestion control that does not pace (RTAX_CC_ALGO, `congctl` in `ip
route`): new connections use it unless the application picks one. Measured:
0.40 -> 3.1 Gbit/s, no pacing timer fires, retransmits from thousands to a
few. Receive packet steering (rps_cpus) would put each flow on one CPU's
backlog too, but measured it bought no throughput once pacing was gone
(1.00 vs 1.01 Gbit/s) and cost 21 us of a 64-byte UDP round trip (17.9 ->
38.9 us: a packet steered to the other, often idle, vCPU waits for it to
wake), so it is not set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sealnet.contracts.abi import SEAL_OVERHEAD  # 16-byte seal header + 16-byte tag
from sealnet.runtime import ethtool
from sealnet.runtime.netns import get_mtu, iproute

RTAX_MTU = "RTAX_MTU"
RTAX_CC_ALGO = "RTAX_CC_ALGO"
# Loss-based congestion controls without internal pacing, best first; reno is always built in.
UNPACED_CONGESTION_CONTROLS = ("cubic", "reno")
AVAILABLE_CC_PATH = "/proc/sys/net/ipv4/tcp_available_congestion_control"


@dataclass
class RouteChange:
    dst: str  # "198.18.0.0/30" or "default"
    table: int
    previous_mtu: int  # 0: the route had no MTU metric
    previous_cc: str = ""  # "": the route named no congestion control


@dataclass
class InterfaceChange:
    iface: str
    netns: str | None
    offloads_disabled: list[str] = field(default_factory=list)
    routes: list[RouteChange] = field(default_factory=list)
    route_mtu: int = 0
    previous_gso_max_segs: int = 0  # 0: unchanged
    route_cc: str = ""  # congestion control the routes name while prepared

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "InterfaceChange":
        routes = [RouteChange(**r) for r in data.get("routes", [])]
        return cls(data["iface"], data.get("netns"), list(data.get("offloads_disabled", [])),
                   routes, int(data.get("route_mtu", 0)), int(data.get("previous_gso_max_segs", 0)),
                   str(data.get("route_cc", "")))


def _route_key(route: Any) -> tuple[str, int, int]:
    dst = route.get_attr("RTA_DST")
    table = route.get_attr("RTA_TABLE") or route["table"]
    return (dst or "default", route["dst_len"], table)


def _metric_mtu(route: Any) -> int:
    metrics = route.get_attr("RTA_METRICS")
    if not metrics:
        return 0
    return int(metrics.get_attr(RTAX_MTU) or 0)


def _metric_cc(route: Any) -> str:
    metrics = route.get_attr("RTA_METRICS")
    return str(metrics.get_attr(RTAX_CC_ALGO) or "") if metrics else ""


def _route_metrics(mtu: int, cc: str) -> dict[str, Any]:
    metrics: dict[str, Any] = {"mtu": mtu} if mtu else {}
    if cc:
        metrics["cc_algo"] = cc
    return metrics


def unpaced_congestion_control() -> str:
    """The first of UNPACED_CONGESTION_CONTROLS this kernel has."""
    try:
        with open(AVAILABLE_CC_PATH) as f:
            available = set(f.read().split())
    except OSError:
        available = set()
    return next((cc for cc in UNPACED_CONGESTION_CONTROLS if cc in available), "reno")


def plan(iface: str, netns: str | None = None) -> InterfaceChange:
    """What `apply` will change, read before anything changes (so a record of it can be kept first).

    A load writes this record durably before applying it: a load killed half
    way through is undone from the record, with nothing left changed."""
    change = InterfaceChange(iface, netns, offloads_disabled=ethtool.active_segmentation_offloads(iface, netns=netns),
                             route_mtu=get_mtu(iface, netns=netns) - SEAL_OVERHEAD,
                             route_cc=unpaced_congestion_control())
    with iproute(netns) as ipr:
        index = ipr.link_lookup(ifname=iface)[0]
        change.previous_gso_max_segs = int(ipr.get_links(index)[0].get_attr("IFLA_GSO_MAX_SEGS") or 0)
        for route in ipr.get_routes(family=2, oif=index):
            dst, dst_len, table = _route_key(route)
            if table == 255:  # the local table: addresses of this host, never on the wire
                continue
            target = f"{dst}/{dst_len}" if dst != "default" else "default"
            change.routes.append(RouteChange(target, table, _metric_mtu(route), _metric_cc(route)))
    return change


def apply(change: InterfaceChange) -> None:
    """Make the changes `plan` recorded; raises (after undoing) on failure."""
    try:
        if change.offloads_disabled:
            ethtool.set_features(change.iface, {n: False for n in change.offloads_disabled}, netns=change.netns)
        _set_gso_max_segs(change.iface, change.netns, 1)
        _set_route_mtus(change)
    except Exception:
        restore(change)
        raise


def prepare(iface: str, netns: str | None = None) -> InterfaceChange:
    """Offloads off and route MTUs lowered; raises (after undoing) on failure."""
    change = plan(iface, netns)
    apply(change)
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
    planned = {(r.dst, r.table) for r in change.routes}
    with iproute(change.netns) as ipr:
        index = ipr.link_lookup(ifname=change.iface)[0]
        for route in ipr.get_routes(family=2, oif=index):
            dst, dst_len, table = _route_key(route)
            target = f"{dst}/{dst_len}" if dst != "default" else "default"
            if (target, table) not in planned:
                continue
            spec = _route_spec(route, index, dst, dst_len, table)
            ipr.route("replace", **spec, metrics=_route_metrics(change.route_mtu, change.route_cc))


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
            wanted = {(r.dst, r.table): r for r in change.routes}
            for route in ipr.get_routes(family=2, oif=index):
                dst, dst_len, table = _route_key(route)
                target = f"{dst}/{dst_len}" if dst != "default" else "default"
                if (target, table) not in wanted:
                    continue
                spec = _route_spec(route, index, dst, dst_len, table)
                previous = wanted[(target, table)]
                metrics = _route_metrics(previous.previous_mtu, previous.previous_cc)
                if metrics:
                    ipr.route("replace", **spec, metrics=metrics)
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
