"""The bypass guard of a sealing load: BPF LSM links that keep its namespace from skipping TC egress.

A packet socket with PACKET_QDISC_BYPASS, or an AF_XDP socket, hands frames to
the driver past TC egress: past the sealing program, in plaintext, counted
nowhere (docs/wire-format.md). The data plane carries BPF LSM programs that
refuse both (bpf_templates/include/seal_guard.h) in one namespace, named by its
cookie in the object's guard_netns map. This module is the loader's side:

- `unavailable_reason`: can this kernel run them at all (BPF LSM active, and a
  program on the hook loads and attaches)? The loader fails closed when not,
  unless the operator accepts the risk (--allow-qdisc-bypass);
- `configure`: the namespace's cookie into the loaded object, map frozen;
- `attach_from_pins`: one link per program, pinned next to the load's other
  pins, so the link lives exactly as long as the load's pin directory: a
  restarted agent adopts it, `unload` and a rolled-back load remove it, and a
  load in another namespace has links of its own.
"""

from __future__ import annotations

import ctypes
import functools
import os
import socket
import struct

from sealnet.contracts import abi
from sealnet.contracts.libbpf import BpfObject, LibbpfError, attach_lsm, get_pinned, pin_fd, probe_lsm_hook
from sealnet.runtime.netns import entered

SECURITYFS = "/sys/kernel/security"
LSM_LIST = os.path.join(SECURITYFS, "lsm")  # the active LSMs, in call order
PROBE_HOOK = "socket_setsockopt"  # one hook answers for all: the kernel runs BPF LSM programs or not
SO_NETNS_COOKIE = 71  # <asm-generic/socket.h>, Linux >= 5.14; Python's socket module lacks it
LINK_SUFFIX = ".link"  # <pin_dir>/<program>.link: the program's attachment

# What the state records (`qdisc_bypass_guard`; `sealnet node status` shows it).
LSM = "lsm"  # the guard's links are attached: bypass refused in this namespace
ACCEPTED_RISK = "accepted-risk"  # the guard could not run; --allow-qdisc-bypass accepted that
NOT_NEEDED = "none"  # the policy seals nothing: nothing to guard


def _mount_securityfs() -> None:
    """securityfs is not mounted on some VMs; a failure to mount shows as no LSM list."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount(b"securityfs", SECURITYFS.encode(), b"securityfs", 0, None)


def unavailable_reason() -> str | None:
    """None when the guard can run here; else why not, in a few words."""
    if not os.path.exists(LSM_LIST) and os.path.dirname(LSM_LIST) == SECURITYFS:
        _mount_securityfs()
    try:
        with open(LSM_LIST) as fh:
            active = fh.read().strip().split(",")
    except OSError:
        return f"cannot read the active LSMs ({LSM_LIST})"
    if "bpf" not in active:
        return f"BPF LSM is not active (boot with lsm=...,bpf; {LSM_LIST}: {','.join(active)})"
    return kernel_refusal()


@functools.lru_cache(maxsize=1)
def kernel_refusal() -> str | None:
    """Does the kernel load and attach a BPF LSM program? Asked once per process (neither the
    answer nor the LSM list changes before a reboot); a hook of the guard the probe did not try
    and the kernel lacks fails the load itself, closed."""
    try:
        probe_lsm_hook(PROBE_HOOK)
    except LibbpfError as exc:
        return f"this kernel refuses BPF LSM programs ({exc})"
    return None


def netns_cookie(netns: str | None) -> int:
    """The namespace's cookie: the value the kernel keeps in struct net, never reused."""
    with entered(netns):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            return int(struct.unpack("=Q", s.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0])


def programs_of(obj: BpfObject) -> list[str]:
    """The guard programs this object carries ([]: built without the sealing path)."""
    names = {p.name for p in obj.programs()}
    return [name for name in abi.GUARD_PROGRAMS if name in names]


def request(obj: BpfObject) -> None:
    """Before load: load the guard programs too (SEC("?lsm/..."): not loaded unless asked)."""
    for name in programs_of(obj):
        obj.set_autoload(name, True)


def configure(obj: BpfObject, netns: str | None) -> None:
    """After load: guard `netns` (its cookie at key 0), then freeze the map so nobody,
    root through a pin included, points the guard elsewhere."""
    m = obj.map(abi.GUARD_NETNS_MAP)
    m.update((0).to_bytes(4, "little"), netns_cookie(netns).to_bytes(8, "little"))
    m.freeze()


def pin_programs(obj: BpfObject, pin_dir: str) -> None:
    for name in programs_of(obj):
        pin_fd(obj.program(name).fd, os.path.join(pin_dir, name))


def link_path(pin_dir: str, name: str) -> str:
    return os.path.join(pin_dir, name + LINK_SUFFIX)


def attach_from_pins(pin_dir: str) -> None:
    """Attach each pinned guard program not attached yet and pin its link (idempotent: a
    load rolled forward after a kill attaches what is missing). A kill between attach and
    pin loses only a link nobody holds, which the kernel then detaches."""
    for name in abi.GUARD_PROGRAMS:
        if os.path.exists(link_path(pin_dir, name)):
            continue
        prog_fd = get_pinned(os.path.join(pin_dir, name))
        try:
            link_fd = attach_lsm(prog_fd)
        finally:
            os.close(prog_fd)
        try:
            pin_fd(link_fd, link_path(pin_dir, name))
        finally:
            os.close(link_fd)


def attached(pin_dir: str) -> bool:
    """Are all of this load's guard links pinned (and so attached)?"""
    return all(os.path.exists(link_path(pin_dir, name)) for name in abi.GUARD_PROGRAMS)
