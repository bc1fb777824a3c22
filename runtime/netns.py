"""Network namespaces, veth pairs, addresses and routes over netlink (pyroute2).

Why in-process netlink rather than `ip`: errors come back as errno with the
failing request, nothing depends on the PATH, and the libbpf TC calls (also
netlink) can run in the same namespace via `enter()`. Third-party programs
(iperf3, tcpdump) are started with `ip netns exec`, which is their normal use.

Namespaces are named; `unique_name()` gives a per-run random suffix so
parallel test workers (pytest-xdist) never collide. `Topology` deletes
everything it created, also when the body raises.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import secrets
import subprocess
import threading
from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator, Sequence, TypeVar

from pyroute2 import IPRoute
from pyroute2 import netns as _pr_netns
from pyroute2.netlink.exceptions import NetlinkError

from sealnet.contracts.errors import OsCallError

__all__ = [
    "NETNS_RUN_DIR",
    "NetnsError",
    "unique_name",
    "create_netns",
    "delete_netns",
    "netns_exists",
    "enter",
    "run_in_netns",
    "iproute",
    "ifindex",
    "add_veth",
    "move_link",
    "add_address",
    "set_up",
    "set_mtu",
    "add_route",
    "delete_link",
    "popen",
    "run",
]

NETNS_RUN_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
IFNAMSIZ = 16  # including the NUL: interface names are at most 15 characters

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.setns.restype = ctypes.c_int


class NetnsError(OsCallError):
    """A namespace or link operation failed; the message names the object."""


def _nl_error(exc: NetlinkError, what: str) -> NetnsError:
    code = exc.code
    return NetnsError(f"{what}: {os.strerror(code)} ({errno.errorcode.get(code, code)})", code)


@contextmanager
def _netlink(what: str) -> Iterator[None]:
    """Turn a netlink refusal inside the block into a NetnsError that names `what`."""
    try:
        yield
    except NetlinkError as exc:
        raise _nl_error(exc, what) from exc


def unique_name(prefix: str = "sn-") -> str:
    """A short random name; fits IFNAMSIZ with room for a few suffix chars."""
    return f"{prefix}{secrets.token_hex(3)}"


def _check_ifname(name: str) -> None:
    if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid interface name {name!r} (1..{IFNAMSIZ - 1} chars, no '/' or spaces)")


def _netns_path(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"invalid network namespace name {name!r}")
    return os.path.join(NETNS_RUN_DIR, name)


# --------------------------------------------------------------------------- namespaces


def netns_exists(name: str) -> bool:
    return os.path.exists(_netns_path(name))


def create_netns(name: str) -> None:
    """Create a named namespace (like `ip netns add`), with its loopback up."""
    if netns_exists(name):
        raise NetnsError(f"network namespace {name!r} already exists", errno.EEXIST)
    try:
        _pr_netns.create(name)
    except OSError as exc:
        raise NetnsError(f"create network namespace {name!r}: {exc.strerror or exc}", exc.errno or 0) from exc
    if not netns_exists(name):
        raise NetnsError(f"create network namespace {name!r}: not present after creation", errno.EIO)
    set_up("lo", netns=name)


def delete_netns(name: str) -> None:
    """Delete a named namespace; its interfaces (and veth peers) go with it once
    nothing else holds it. Missing namespaces are ignored (idempotent cleanup)."""
    path = _netns_path(name)
    if not os.path.exists(path):
        return
    try:
        _pr_netns.remove(name)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise NetnsError(f"delete network namespace {name!r}: {exc.strerror or exc}", exc.errno or 0) from exc


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(f"setns into {what}: {os.strerror(err)}", err)


def entered(name: str | None) -> ContextManager[object]:
    """`enter(name)`, or stay where we are when name is None (the host namespace)."""
    return enter(name) if name is not None else nullcontext()


@contextmanager
def enter(name: str) -> Iterator[None]:
    """Switch the *calling thread* into namespace ``name`` and back on exit.

    Sockets (including netlink sockets that libbpf and pyroute2 open) created
    inside the block belong to that namespace for their whole life.
    """
    path = _netns_path(name)
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(f"network namespace {name!r} does not exist", errno.ENOENT) from None
    try:
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except BaseException:
        os.close(target)
        raise
    try:
        _setns(target, f"namespace {name!r}")
        try:
            yield
        finally:
            # Failing to return would leave this thread in a foreign namespace;
            # nothing sensible can continue then.
            _setns(original, "the original namespace")
    finally:
        os.close(target)
        os.close(original)


def run_in_netns(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn`` on a helper thread inside namespace ``name``; returns its
    result or re-raises its exception. The caller's thread is untouched."""
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            with enter(name):
                result.append(fn(*args, **kwargs))
        except BaseException as exc:  # re-raised in the caller
            error.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# --------------------------------------------------------------------------- links and addresses


@contextmanager
def iproute(netns: str | None = None) -> Iterator[IPRoute]:
    """An RTNL socket in ``netns`` (host namespace when None). Never creates a
    namespace implicitly (pyroute2 would by default).

    The socket is opened with this thread inside the namespace (`enter`), and
    a socket belongs to the namespace it was created in for its whole life:
    about 1.5 ms, where pyroute2's own `netns=` starts a helper at about 20 ms
    a call (a node agent serving many nodes makes several calls per node)."""
    if netns is not None and not netns_exists(netns):
        raise NetnsError(f"network namespace {netns!r} does not exist", errno.ENOENT)
    with entered(netns):
        ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def _where(netns: str | None) -> str:
    return f" in netns {netns!r}" if netns else ""


def _lookup(ipr: IPRoute, ifname: str, netns: str | None) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NetnsError(f"no interface {ifname!r}{_where(netns)}", errno.ENODEV)
    return int(found[0])


def ifindex(ifname: str, netns: str | None = None) -> int:
    with iproute(netns) as ipr:
        return _lookup(ipr, ifname, netns)


def add_veth(name: str, peer: str, *, netns: str | None = None, peer_netns: str | None = None) -> None:
    """Create veth ``name``<->``peer`` in ``netns``, with ``peer`` placed in ``peer_netns``."""
    _check_ifname(name)
    _check_ifname(peer)
    with iproute(netns) as ipr:
        with _netlink(f"add veth {name!r}/{peer!r}{_where(netns)}"):
            ipr.link("add", ifname=name, kind="veth", peer=peer)
    if peer_netns != netns:
        move_link(peer, peer_netns, from_netns=netns)


def move_link(ifname: str, to_netns: str | None, *, from_netns: str | None = None) -> None:
    """Move an interface into namespace ``to_netns`` (None: the host namespace)."""
    if to_netns is None:
        target_fd = os.open("/proc/1/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    else:
        try:
            target_fd = os.open(_netns_path(to_netns), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NetnsError(f"network namespace {to_netns!r} does not exist", errno.ENOENT) from None
    try:
        with iproute(from_netns) as ipr:
            idx = _lookup(ipr, ifname, from_netns)
            with _netlink(f"move {ifname!r} to netns {to_netns!r}"):
                ipr.link("set", index=idx, net_ns_fd=target_fd)
    finally:
        os.close(target_fd)


def add_address(ifname: str, cidr: str, *, netns: str | None = None) -> None:
    """Add ``cidr`` (e.g. "198.18.0.1/30") to ``ifname``."""
    iface = ipaddress.ip_interface(cidr)
    with iproute(netns) as ipr:
        idx = _lookup(ipr, ifname, netns)
        with _netlink(f"add address {cidr} to {ifname!r}{_where(netns)}"):
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)


def set_up(ifname: str, *, netns: str | None = None, up: bool = True) -> None:
    with iproute(netns) as ipr:
        idx = _lookup(ipr, ifname, netns)
        with _netlink(f"set {ifname!r} {'up' if up else 'down'}{_where(netns)}"):
            ipr.link("set", index=idx, state="up" if up else "down")


def set_mtu(ifname: str, mtu: int, *, netns: str | None = None) -> None:
    with iproute(netns) as ipr:
        idx = _lookup(ipr, ifname, netns)
        with _netlink(f"set MTU {mtu} on {ifname!r}{_where(netns)}"):
            ipr.link("set", index=idx, mtu=mtu)


def get_mtu(ifname: str, *, netns: str | None = None) -> int:
    with iproute(netns) as ipr:
        idx = _lookup(ipr, ifname, netns)
        return int(ipr.link("get", index=idx)[0].get("IFLA_MTU"))


def add_route(
    dst: str,
    *,
    gateway: str | None = None,
    ifname: str | None = None,
    mtu: int | None = None,
    netns: str | None = None,
) -> None:
    """Add a route to ``dst`` (CIDR or "default"), via ``gateway`` and/or out of
    ``ifname``, optionally with a route MTU (room for the seal overhead)."""
    if gateway is None and ifname is None:
        raise ValueError("add_route needs a gateway or an ifname")
    spec: dict[str, Any] = {"dst": "0.0.0.0/0" if dst == "default" else str(ipaddress.ip_network(dst))}
    if gateway is not None:
        spec["gateway"] = str(ipaddress.ip_address(gateway))
    with iproute(netns) as ipr:
        if ifname is not None:
            spec["oif"] = _lookup(ipr, ifname, netns)
        if mtu is not None:
            spec["metrics"] = {"mtu": mtu}
        with _netlink(f"add route {dst}{_where(netns)}"):
            ipr.route("add", **spec)


def delete_link(ifname: str, *, netns: str | None = None, missing_ok: bool = True) -> None:
    with iproute(netns) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            if missing_ok:
                return
            raise NetnsError(f"no interface {ifname!r}{_where(netns)}", errno.ENODEV)
        try:
            ipr.link("del", index=found[0])
        except NetlinkError as exc:
            if exc.code == errno.ENODEV and missing_ok:
                return
            raise _nl_error(exc, f"delete {ifname!r}{_where(netns)}") from exc


# --------------------------------------------------------------------------- processes


def _ns_argv(name: str, argv: Sequence[str]) -> list[str]:
    _netns_path(name)
    return ["ip", "netns", "exec", name, *argv]


def popen(name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start a third-party program inside namespace ``name`` (ip netns exec)."""
    return subprocess.Popen(_ns_argv(name, argv), **kwargs)


def run(name: str, argv: Sequence[str], *, timeout: float = 30.0, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    """Run a program inside ``name`` to completion (bounded by ``timeout``)."""
    return subprocess.run(_ns_argv(name, argv), timeout=timeout, **kwargs)
