"""The federation a policy describes, built out of network namespaces.

Shape (one machine standing in for many):

    domain A: control plane ns ─┐                 ┌─ domain B: control plane ns
    domain A: node ns 1..N ─────┼── "wan" ns ─────┼─ domain B: node ns 1..N
                                (routes, untrusted, where traffic is captured)

Every host (a control plane or a node) is a namespace whose only uplink,
`eth0`, is a veth to the wan namespace, addressed with one /32 from its
domain's node CIDR. Its default route goes via 169.254.0.1, an address every
wan-side end carries (the way Calico wires pods), and the wan namespace routes
each host's /32 to its veth and forwards. So any host reaches any other, and
every packet between two hosts crosses the wan namespace, where a capture sees
exactly what an untrusted network would.

Speed: namespaces are created by unshare + bind mount on one helper thread and
configured through `rtnl` batches (one datagram per host), so 1,000 hosts take
seconds, not minutes. Teardown unmounts the namespaces; the kernel frees them
and their veths once no process holds them.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import re
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator

from sealnet.compiler.ir import Policy, TeeKind
from sealnet.runtime import netns
from sealnet.runtime.cluster import rtnl
from sealnet.runtime.netns import NETNS_RUN_DIR, NetnsError

WAN_GATEWAY = "169.254.0.1"  # on every wan-side veth end; each host's next hop
UPLINK = "eth0"  # each host's only interface besides lo
UPLINK_INDEX = 2  # a fresh namespace has lo at 1
DEFAULT_CONTROL_PORT = 7443
ROLE_CONTROL = "control"
ROLE_NODE = "node"
NAME_PREFIX = "snc-"  # every namespace of every cluster starts with this
_CLUSTER_ID = re.compile(r"[a-z0-9]{1,12}")

_CLONE_NEWNET = 0x40000000
_MS_BIND = 0x1000
_MNT_DETACH = 0x2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


class TopologyError(NetnsError):
    """The policy cannot be laid out (e.g. a domain's CIDR is too small)."""


@dataclass(frozen=True)
class Host:
    """One control plane or node: its namespace, address and wan-side veth."""

    name: str  # "<domain>-cp" or "<domain>-n<i>"
    domain: str
    role: str  # ROLE_CONTROL or ROLE_NODE
    netns: str
    address: str  # IPv4, a /32 on the host's eth0
    wan_ifname: str
    wan_ifindex: int
    port: int = 0  # the control plane's listening port; 0 for nodes


@dataclass(frozen=True)
class Layout:
    """Everything `build` creates, by name; recorded in the cluster's state so
    that `teardown` can remove it even after a crash."""

    cluster_id: str
    wan_netns: str
    hosts: tuple[Host, ...]

    @property
    def namespaces(self) -> list[str]:
        return [self.wan_netns, *(h.netns for h in self.hosts)]

    def by_domain(self, domain: str, role: str | None = None) -> list[Host]:
        return [h for h in self.hosts if h.domain == domain and (role is None or h.role == role)]

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def to_json(self) -> dict[str, object]:
        return {"cluster_id": self.cluster_id, "wan_netns": self.wan_netns,
                "hosts": [asdict(h) for h in self.hosts]}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Layout:
        hosts = tuple(Host(**h) for h in data["hosts"])  # type: ignore[arg-type, union-attr]
        return cls(str(data["cluster_id"]), str(data["wan_netns"]), hosts)


def _control_address(policy_domain_control: str | None, first_net: ipaddress.IPv4Network) -> tuple[str, int]:
    if policy_domain_control:
        host, _, port = policy_domain_control.rpartition(":")
        return host, int(port)
    return str(first_net.network_address + 1), DEFAULT_CONTROL_PORT


def _host_addresses(prefixes: Iterable[ipaddress.IPv4Network], skip: str) -> Iterator[str]:
    for net in prefixes:
        for addr in net.hosts():
            if str(addr) != skip:
                yield str(addr)


def plan(policy: Policy, nodes_per_domain: int, cluster_id: str) -> Layout:
    """Lay out the policy's domains: per domain that has a TEE a control plane
    (at the policy's `control` address, else the CIDR's first host) and
    `nodes_per_domain` nodes on the next free addresses. A `tee none` domain
    has nodes but no control plane: nobody there can be attested."""
    if not _CLUSTER_ID.fullmatch(cluster_id):
        raise TopologyError(f"invalid cluster id {cluster_id!r} (1-12 lowercase letters and digits)", errno.EINVAL)
    if nodes_per_domain < 1:
        raise TopologyError("a cluster needs at least 1 node per domain", errno.EINVAL)
    wan = f"{NAME_PREFIX}{cluster_id}-wan"
    hosts: list[Host] = []
    wan_index = 2  # the wan namespace's lo is 1

    def add(name: str, domain: str, role: str, address: str, port: int = 0) -> None:
        nonlocal wan_index
        hosts.append(Host(name, domain, role, f"{NAME_PREFIX}{cluster_id}-{name}", address,
                          f"w{wan_index}", wan_index, port))
        wan_index += 1

    for domain in policy.domains:
        prefixes = [p for p in domain.prefixes if isinstance(p, ipaddress.IPv4Network)]
        if not prefixes:
            raise TopologyError(f"domain {domain.name!r} has no IPv4 node prefix to place hosts in", errno.EINVAL)
        control, port = _control_address(domain.control_plane, prefixes[0])
        if domain.tee is not TeeKind.NONE:
            add(f"{domain.name}-cp", domain.name, ROLE_CONTROL, control, port)
        addresses = _host_addresses(prefixes, control)
        for i in range(1, nodes_per_domain + 1):
            address = next(addresses, None)
            if address is None:
                raise TopologyError(f"domain {domain.name!r}: its nodes CIDR holds fewer than "
                                    f"{nodes_per_domain} nodes besides the control plane", errno.ENOSPC)
            add(f"{domain.name}-n{i}", domain.name, ROLE_NODE, address)
    return Layout(cluster_id, wan, tuple(hosts))


# --------------------------------------------------------------------------- build


def _ensure_run_dir() -> None:
    """NETNS_RUN_DIR must be a shared mount (what `ip netns add` sets up once)
    so that our bind mounts are visible to `ip netns exec` in other mount
    namespaces; creating one namespace the standard way prepares it."""
    probe = netns.unique_name("snc-probe-")
    netns.create_netns(probe)
    netns.delete_netns(probe)


def _new_namespace(name: str) -> None:
    """Move the calling thread into a fresh network namespace and pin it under
    NETNS_RUN_DIR/name."""
    path = os.path.join(NETNS_RUN_DIR, name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        raise NetnsError(f"network namespace {name!r} already exists", errno.EEXIST) from None
    if _libc.unshare(_CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        os.unlink(path)
        raise NetnsError(f"create network namespace {name!r}: {os.strerror(err)}", err)
    if _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", _MS_BIND, None) != 0:
        err = ctypes.get_errno()
        os.unlink(path)
        raise NetnsError(f"pin network namespace {name!r}: {os.strerror(err)}", err)


def _write_sysctl(key: str, value: str) -> None:
    # /proc/sys/net resolves to the opening thread's namespace.
    with open(f"/proc/sys/{key.replace('.', '/')}", "w") as fh:
        fh.write(value)


Progress = Callable[[int, int], None]  # (hosts done, hosts total)


def _build_on_this_thread(layout: Layout, progress: Progress | None) -> None:
    _new_namespace(layout.wan_netns)
    wan_sock = rtnl.open_socket()
    wan_fd = os.open(os.path.join(NETNS_RUN_DIR, layout.wan_netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _write_sysctl("net.ipv4.ip_forward", "1")
        up = rtnl.Batch(f"netns {layout.wan_netns!r}")
        up.link_up(1)
        up.commit(wan_sock)
        for done, host in enumerate(layout.hosts, start=1):
            _new_namespace(host.netns)
            with rtnl.open_socket() as sock:
                batch = rtnl.Batch(f"netns {host.netns!r}")
                batch.link_up(1)
                batch.veth(UPLINK, UPLINK_INDEX, host.wan_ifname, host.wan_ifindex, wan_fd)
                batch.link_up(UPLINK_INDEX)
                batch.address(UPLINK_INDEX, host.address, 32)
                batch.route(f"{WAN_GATEWAY}/32", UPLINK_INDEX)
                batch.route("0.0.0.0/0", UPLINK_INDEX, gateway=WAN_GATEWAY)
                batch.commit(sock)
            wan = rtnl.Batch(f"netns {layout.wan_netns!r}")
            wan.link_up(host.wan_ifindex)
            wan.address(host.wan_ifindex, WAN_GATEWAY, 32)
            wan.route(f"{host.address}/32", host.wan_ifindex)
            wan.commit(wan_sock)
            if progress is not None:
                progress(done, len(layout.hosts))
    finally:
        os.close(wan_fd)
        wan_sock.close()


def build(layout: Layout, progress: Progress | None = None) -> float:
    """Create the layout's namespaces, veths, addresses and routes; returns the
    seconds it took. On failure everything created so far is removed."""
    _ensure_run_dir()
    error: list[BaseException] = []

    def body() -> None:
        # This helper thread hops from namespace to namespace and then ends, so
        # the caller's thread never leaves its own namespace.
        try:
            _build_on_this_thread(layout, progress)
        except BaseException as exc:
            error.append(exc)

    started = time.perf_counter()
    thread = threading.Thread(target=body, name=f"cluster-{layout.cluster_id}", daemon=True)
    thread.start()
    thread.join()
    if error:
        teardown(layout.cluster_id)
        raise error[0]
    return time.perf_counter() - started


# --------------------------------------------------------------------------- teardown


def cluster_namespaces(cluster_id: str) -> list[str]:
    """Every pinned namespace of this cluster, found by its name prefix (so a
    crash between creating a namespace and recording it leaves nothing)."""
    prefix = f"{NAME_PREFIX}{cluster_id}-"
    try:
        names = os.listdir(NETNS_RUN_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def teardown(cluster_id: str) -> int:
    """Unpin every namespace of the cluster; returns how many were removed.
    Idempotent. Processes still inside them must be stopped first, or the
    kernel keeps those namespaces alive (unnamed) until they exit."""
    removed = 0
    for name in cluster_namespaces(cluster_id):
        path = os.path.join(NETNS_RUN_DIR, name)
        if _libc.umount2(path.encode(), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            if err not in (errno.EINVAL, errno.ENOENT):  # EINVAL: not mounted (half-created)
                raise NetnsError(f"unpin network namespace {name!r}: {os.strerror(err)}", err)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        removed += 1
    return removed
