"""The node agent's loader: measured bytes into the kernel, attached, and undone.

Order matters for failing closed and for "a bad bundle changes nothing":
everything that can be refused (signature, measurement, the kernel
verifier) happens before the interface is touched; only then is the
interface prepared and the new programs attached over the old ones (TC
replaces a filter atomically at the same priority and handle), so traffic
never passes unfiltered during a reload. Maps are pinned in bpffs so that
`status` and key installation find them after this process exits.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Any

from sealnet.runtime import interface, seal_keys
from sealnet.contracts.libbpf import BpfObject, Map, attach_tc, detach_tc, get_pinned, pin_fd, query_tc
from sealnet.runtime.netns import entered, ifindex

BPFFS = "/sys/fs/bpf"
PIN_ROOT = os.path.join(BPFFS, "sealnet")
STATE_DIR = os.environ.get("SEALNET_STATE_DIR", "/run/sealnet")
EGRESS, INGRESS = "sealnet_egress", "sealnet_ingress"
TC_PRIORITY = 0xC0DE & 0xFFFF  # ours, distinct from a user's filters at priority 1
TC_HANDLE = 1
PINNED_MAPS = ("rule_hits", "verdict_hits")
SEAL_PINNED_MAPS = ("seal_keys", "seal_tx", "seal_config")  # for key installation after load


class NodeError(Exception):
    """The node could not be (un)loaded; nothing was left half done."""


@dataclass
class NodeState:
    iface: str
    netns: str | None
    measurement: str
    policy: str
    program_tags: dict[str, str]
    program_ids: dict[str, int]
    pin_dir: str
    interface_change: dict[str, Any] = field(default_factory=dict)
    domain_ids: dict[str, int] = field(default_factory=dict)
    sealing: bool = False
    sender: int | None = None

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _slug(iface: str, netns: str | None) -> str:
    return f"{netns or 'host'}--{iface}"


def state_path(iface: str, netns: str | None) -> str:
    return os.path.join(STATE_DIR, _slug(iface, netns) + ".json")


def ensure_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf when it is not mounted (it is not, on some VMs)."""
    with open("/proc/mounts") as fh:
        if any(line.split()[1] == BPFFS and line.split()[2] == "bpf" for line in fh):
            return
    os.makedirs(BPFFS, exist_ok=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"bpf", BPFFS.encode(), b"bpf", 0, b"mode=0700") != 0:
        err = ctypes.get_errno()
        raise NodeError(f"cannot mount bpffs at {BPFFS}: {os.strerror(err)}")


def read_state(iface: str, netns: str | None) -> NodeState | None:
    try:
        with open(state_path(iface, netns)) as fh:
            return NodeState(**json.load(fh))
    except FileNotFoundError:
        return None


def _write_state(state: NodeState) -> None:
    os.makedirs(STATE_DIR, mode=0o700, exist_ok=True)
    tmp = state_path(state.iface, state.netns) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(state.to_json(), fh, indent=2)
    os.replace(tmp, state_path(state.iface, state.netns))


def seal_handles(obj: BpfObject) -> seal_keys.SealHandles | None:
    """The key-installation handles of a loaded object (None: built without sealing)."""
    names = {m.name for m in obj.maps()}
    if not set(SEAL_PINNED_MAPS) <= names:
        return None  # a data plane built without the sealing path
    return seal_keys.SealHandles(obj.map("seal_keys"), obj.map("seal_tx"), obj.map("seal_config"),
                                 obj.program(seal_keys.INSTALL_PROGRAM).fd)


def pinned_seal_handles(state: NodeState) -> seal_keys.SealHandles:
    if not state.sealing:
        raise NodeError(f"the data plane on {state.iface} has no sealing path")
    maps: list[Map] = []
    try:
        for name in SEAL_PINNED_MAPS:
            maps.append(Map.from_fd(get_pinned(os.path.join(state.pin_dir, name)), owns_fd=True))
        install_fd = get_pinned(os.path.join(state.pin_dir, seal_keys.INSTALL_PROGRAM))
    except Exception:
        for m in maps:  # a missing pin must not leak the fds already opened
            m.close()
        raise
    return seal_keys.SealHandles(*maps, install_fd=install_fd)


def close_pinned_handles(handles: seal_keys.SealHandles) -> None:
    for m in (handles.keys, handles.tx, handles.config):
        m.close()
    os.close(handles.install_fd)


def load_object(object_bytes: bytes, *, iface: str, netns: str | None, measurement: str,
                policy: str, domain_ids: dict[str, int] | None = None,
                keys: seal_keys.KeyFile | None = None, keys_path: str = "<keys>") -> NodeState:
    """Load the (already verified) object, install keys, then attach it to both hooks of `iface`.

    Keys go in before the programs are attached, so a reload switches from
    the old keys to the new ones without a gap; without keys, seal traffic
    is dropped (nothing leaves in plaintext) until `install_keys`.
    """
    index = ifindex(iface, netns)  # fails before anything is loaded if the interface is missing
    obj = BpfObject.open_memory(object_bytes, "sealnet")
    try:
        obj.load()  # the kernel verifier: a refusal leaves the running programs in place
        programs = {name: obj.program(name) for name in (EGRESS, INGRESS)}
        handles = seal_handles(obj)
        if keys is not None:
            if handles is None:
                raise NodeError("keys given, but this bundle's data plane has no sealing path")
            seal_keys.install(handles, keys, domain_ids or {}, program_id=programs[EGRESS].info().id,
                              state_dir=STATE_DIR, path=keys_path)
        previous = read_state(iface, netns)
        change = interface.InterfaceChange.from_json(previous.interface_change) if previous \
            else interface.prepare(iface, netns)
        try:
            with entered(netns):
                for name, prog in programs.items():
                    attach_tc(prog.fd, index, ingress=(name == INGRESS), priority=TC_PRIORITY,
                              handle=TC_HANDLE, replace=True)
        except Exception:
            if previous is None:
                interface.restore(change)
            raise
        ensure_bpffs()
        pin_dir = os.path.join(PIN_ROOT, _slug(iface, netns))
        if os.path.isdir(pin_dir):
            shutil.rmtree(pin_dir)
        os.makedirs(pin_dir, mode=0o700)
        for name in PINNED_MAPS + (SEAL_PINNED_MAPS if handles else ()):
            pin_fd(obj.map(name).fd, os.path.join(pin_dir, name))
        if handles:
            pin_fd(handles.install_fd, os.path.join(pin_dir, seal_keys.INSTALL_PROGRAM))
        state = NodeState(
            iface=iface, netns=netns, measurement=measurement, policy=policy,
            program_tags={n: p.tag().hex() for n, p in programs.items()},
            program_ids={n: p.info().id for n, p in programs.items()},
            pin_dir=pin_dir, interface_change=change.to_json(), domain_ids=dict(domain_ids or {}),
            sealing=handles is not None, sender=keys.sender if keys else None)
        _write_state(state)
        return state
    finally:
        if keys is not None:
            keys.wipe()
        obj.close()  # attached programs and pinned maps stay alive in the kernel


def install_keys(iface: str, netns: str | None, keys: seal_keys.KeyFile, keys_path: str = "<keys>") -> NodeState:
    """Replace the keys of the running data plane (what the control plane does on rotation)."""
    state = read_state(iface, netns)
    if state is None:
        raise NodeError(f"nothing is loaded on {iface}")
    handles = pinned_seal_handles(state)
    try:
        seal_keys.install(handles, keys, state.domain_ids, program_id=state.program_ids[EGRESS],
                          state_dir=STATE_DIR, path=keys_path)
    finally:
        close_pinned_handles(handles)
    state.sender = keys.sender
    _write_state(state)
    return state


def unload(iface: str, netns: str | None) -> list[str]:
    """Detach both programs, undo the interface preparation, drop pins and state."""
    state = read_state(iface, netns)
    problems: list[str] = []
    try:
        index = ifindex(iface, netns)
    except Exception as exc:
        index = None
        problems.append(f"{iface}: {exc}")
    if index is not None:
        with entered(netns):
            for ingress in (False, True):
                if query_tc(index, ingress, TC_PRIORITY, TC_HANDLE) is not None:
                    detach_tc(index, ingress, TC_PRIORITY, TC_HANDLE)
    if state is None:
        if index is None:
            raise NodeError(f"nothing is loaded on {iface}")
        return problems
    if index is not None:
        problems += interface.restore(interface.InterfaceChange.from_json(state.interface_change))
    shutil.rmtree(state.pin_dir, ignore_errors=True)
    os.unlink(state_path(iface, netns))
    return problems


def attached_program_ids(iface: str, netns: str | None) -> dict[str, int | None]:
    index = ifindex(iface, netns)
    with entered(netns):
        return {EGRESS: query_tc(index, False, TC_PRIORITY, TC_HANDLE),
                INGRESS: query_tc(index, True, TC_PRIORITY, TC_HANDLE)}
