"""The node agent's loader: measured bytes into the kernel, attached, and undone, atomically.

Order matters for failing closed and for "a bad bundle changes nothing":
everything that can be refused (signature, measurement, rollback, the
kernel verifier, keys) happens before the interface is touched. Then:

1. the new load's programs and maps are pinned in a directory of its own
   (/sys/fs/bpf/sealnet/<netns>--<iface>/load-<id>);
2. the state file records "loading" with both the new and the old pin
   directories (and, on a first load, the interface changes it is about to
   make), written durably: this is the journal;
3. the interface is prepared (first load only);
4. a sealing load's bypass guard (runtime/node_guard.py) is attached and its
   links pinned in the new pin directory, before the TC programs: nothing
   sent past TC egress from this namespace while the new programs seal;
5. ingress is attached before egress (receive before send), each replacing
   the old program atomically at our TC priority and handle;
6. the state says "running" and the old pins (the old guard's links with
   them) are dropped.

A command killed anywhere leaves either the old load running, untouched
(before 2), or a journal that the next command (`recover`) rolls forward
from the pins. `unload` journals "unloading", detaches egress before
ingress and finishes the same way. A data plane with seal rules is not
unloaded unless asked to open them: its traffic would leave in plaintext.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shutil
from typing import Any, Iterator

from sealnet.contracts.libbpf import (BpfObject, LibbpfError, Map, attach_tc, destroy_clsact, detach_tc, get_pinned,
                                      pin_fd, query_tc)
from sealnet.contracts import abi
from sealnet.runtime import failpoints, interface, node_guard, replay_store, replay_table, seal_keys
from sealnet.runtime.netns import entered, ifindex, iproute
from sealnet.runtime.node_files import locked
from sealnet.runtime.node_state import (LOADING, RUNNING, UNLOADING, NodeState, StateError, highest_version,
                                        lock_path, record_version, remove_state, slug, write_state)
from sealnet.runtime.node_state import read_state as _read_state

BPFFS = "/sys/fs/bpf"
PIN_ROOT = os.path.join(BPFFS, "sealnet")
STATE_DIR = os.environ.get("SEALNET_STATE_DIR", "/run/sealnet")
DURABLE_DIR = os.environ.get("SEALNET_LIB_DIR", "/var/lib/sealnet")
# The environment's spelling of --allow-qdisc-bypass (for service managers and test rigs on
# kernels without BPF LSM); recorded in the state like the flag.
ALLOW_QDISC_BYPASS_ENV = "SEALNET_ALLOW_QDISC_BYPASS"
EGRESS, INGRESS = abi.EGRESS_PROGRAM, abi.INGRESS_PROGRAM
ATTACH_ORDER = (INGRESS, EGRESS)  # receive before send; unload goes the other way
TC_PRIORITY = 0xC0DE & 0xFFFF  # ours, distinct from a user's filters at priority 1
TC_HANDLE = 1
PINNED_MAPS = abi.COUNTER_MAPS
REPLAY_MAPS = abi.SEAL_REPLAY_MAPS  # carried from load to load: replay protection survives a reload
SEAL_PINNED_MAPS = abi.SEAL_INSTALL_MAPS + REPLAY_MAPS + (abi.SEAL_REPLAY_EVICTIONS_MAP,)  # the last for status
FORGET_PROGRAM = abi.FORGET_STREAMS_PROGRAM
# Maps user space has no reason to write after load: frozen (BPF_MAP_FREEZE), so no process,
# root included, rewrites a counter, a key slot or the scratch through a pin; the programs still
# write them. seal_tx, seal_config, seal_seq and the stream table stay writable: rotation, sequence
# renewal and a first load's restore write them (the table's salt is frozen once a first load set it).
FROZEN_MAPS = abi.COUNTER_MAPS + (abi.SEAL_KEYS_MAP, abi.SEAL_SCRATCH_MAP, abi.SEAL_REPLAY_EVICTIONS_MAP)


def _holds_kptrs(m: Map) -> bool:
    """An AES-CCM data plane's key slots hold bpf_crypto contexts as kptrs: the kernel
    cannot freeze such a map (ENOTSUPP), and user space cannot write a kptr anyway."""
    return m.name == abi.SEAL_KEYS_MAP and \
        abi.seal_suite_of_key_slot(m.value_size) == abi.SealSuite.AES_128_CCM


class NodeError(Exception):
    """The node could not be (un)loaded; what was running is still running."""


def read_state(iface: str, netns: str | None) -> NodeState | None:
    return _read_state(STATE_DIR, iface, netns)


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


@contextlib.contextmanager
def _exclusive(iface: str, netns: str | None) -> Iterator[None]:
    """One command at a time per interface, across processes."""
    with locked(lock_path(STATE_DIR, iface, netns)):
        yield


def node_address(iface: str, netns: str | None) -> int:
    """The interface's first IPv4 address as a 32-bit integer: the sender id of this node.

    Sealed packets cannot cross NAT (the tag covers the addresses), so no two
    nodes of a federation seal from the same address: a sender id nobody else has."""
    with iproute(netns) as ipr:
        index = ipr.link_lookup(ifname=iface)
        addresses = sorted(int(ipaddress.IPv4Address(a.get_attr("IFA_ADDRESS")))
                           for a in ipr.get_addr(family=2, index=index[0])) if index else []
    if not addresses:
        raise NodeError(f"{iface} has no IPv4 address: sealing uses the node's address as its sender id")
    return addresses[0]


def _clsact_exists(iface: str, netns: str | None) -> bool:
    with iproute(netns) as ipr:
        index = ipr.link_lookup(ifname=iface)[0]
        return any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=index))


# --------------------------------------------------------------------- handles


def seal_handles(obj: BpfObject) -> seal_keys.SealHandles | None:
    """The key-installation handles of a loaded object (None: built without sealing)."""
    names = {m.name for m in obj.maps()}
    if not set(SEAL_PINNED_MAPS) <= names:
        return None  # a data plane built without the sealing path
    return seal_keys.SealHandles(*(obj.map(name) for name in abi.SEAL_INSTALL_MAPS),
                                 install_fd=obj.program(abi.INSTALL_KEY_PROGRAM).fd)


def pinned_seal_handles(state: NodeState) -> seal_keys.SealHandles:
    if not state.sealing:
        raise NodeError(f"the data plane on {state.iface} has no sealing path")
    maps: list[Map] = []
    try:
        for name in abi.SEAL_INSTALL_MAPS:
            maps.append(Map.from_fd(get_pinned(os.path.join(state.pin_dir, name)), owns_fd=True))
        install_fd = get_pinned(os.path.join(state.pin_dir, seal_keys.INSTALL_PROGRAM))
    except Exception:
        for m in maps:  # a missing pin must not leak the fds already opened
            m.close()
        raise
    return seal_keys.SealHandles(*maps, install_fd=install_fd)


def close_pinned_handles(handles: seal_keys.SealHandles) -> None:
    for m in (handles.keys, handles.tx, handles.config, handles.seq):
        m.close()
    os.close(handles.install_fd)


def _pin_dir_of(iface: str, netns: str | None, load_id: int) -> str:
    return os.path.join(PIN_ROOT, slug(iface, netns), f"load-{load_id}")


def _pinned_program_fd(pin_dir: str, name: str) -> int:
    return get_pinned(os.path.join(pin_dir, name))


# --------------------------------------------------------------------- attach / detach


def _attach_from_pins(state: NodeState, index: int) -> None:
    """Attach the pinned programs of `state.pin_dir`: the bypass guard, then ingress, then egress."""
    if state.qdisc_bypass_guard == node_guard.LSM:
        node_guard.attach_from_pins(state.pin_dir)
        failpoints.hit("load:guard")
    with entered(state.netns):
        for name in ATTACH_ORDER:
            fd = _pinned_program_fd(state.pin_dir, name)
            try:
                attach_tc(fd, index, ingress=(name == INGRESS), priority=TC_PRIORITY, handle=TC_HANDLE, replace=True)
            finally:
                os.close(fd)
            failpoints.hit(f"load:{name}")


def _detach_ours(index: int, netns: str | None) -> None:
    """Detach egress, then ingress (send stops before receive)."""
    with entered(netns):
        for name in reversed(ATTACH_ORDER):
            ingress = name == INGRESS
            if query_tc(index, ingress, TC_PRIORITY, TC_HANDLE) is not None:
                detach_tc(index, ingress, TC_PRIORITY, TC_HANDLE)
                failpoints.hit(f"unload:{name}")


def _remove_pins(pin_dir: str | None) -> None:
    if pin_dir:
        shutil.rmtree(pin_dir, ignore_errors=True)


def _remove_stray_pins(iface: str, netns: str | None, keep: set[str]) -> None:
    """Pin directories of loads that never reached the journal (killed before step 2)."""
    root = os.path.join(PIN_ROOT, slug(iface, netns))
    if not os.path.isdir(root):
        return
    for entry in os.listdir(root):
        path = os.path.join(root, entry)
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------- recovery


def _finish_load(state: NodeState, index: int) -> NodeState:
    """Roll a journalled load forward from its pins: interface, ingress, egress, state, old pins."""
    if state.previous_pin_dir is None:
        change = (interface.InterfaceChange.from_json(state.interface_change) if state.interface_change
                  else interface.plan(state.iface, state.netns))
        if not state.interface_change:
            state.interface_change = change.to_json()
            write_state(STATE_DIR, state)
        interface.apply(change)
        failpoints.hit("load:interface")
    _attach_from_pins(state, index)
    failpoints.hit("load:attached")
    old = state.previous_pin_dir
    state.phase, state.previous_pin_dir = RUNNING, None
    write_state(STATE_DIR, state)
    _remove_pins(old)
    return state


def _finish_unload(state: NodeState, index: int | None) -> list[str]:
    problems: list[str] = []
    if index is not None:
        _detach_ours(index, state.netns)
        if state.clsact_created:
            try:
                with entered(state.netns):
                    if all(query_tc(index, ing, TC_PRIORITY, TC_HANDLE) is None for ing in (False, True)):
                        destroy_clsact(index)
            except LibbpfError as exc:
                problems.append(f"clsact: {exc}")
        if state.interface_change:
            problems += interface.restore(interface.InterfaceChange.from_json(state.interface_change))
    _remove_pins(state.pin_dir)
    _remove_pins(state.previous_pin_dir)
    _remove_pins(os.path.join(PIN_ROOT, slug(state.iface, state.netns)))  # and anything stray under it
    remove_state(STATE_DIR, state.iface, state.netns)
    return problems


def recover(iface: str, netns: str | None) -> str | None:
    """Finish a load or unload that was killed half way; returns what was done (None: nothing)."""
    state = read_state(iface, netns)
    if state is None:
        _remove_stray_pins(iface, netns, set())
        return None
    if state.phase == RUNNING:
        _remove_stray_pins(iface, netns, {state.pin_dir})
        return None
    index = ifindex(iface, netns)
    if state.phase == LOADING:
        if all(os.path.exists(os.path.join(state.pin_dir, p)) for p in _pinned_programs(state)):
            _finish_load(state, index)
            return f"finished an interrupted load of {state.policy} on {iface}"
        raise NodeError(f"{iface}: an interrupted load lost its pins ({state.pin_dir}); "
                        f"run `sealnet node unload --iface {iface} --open-sealed-flows` and load again")
    if state.phase == UNLOADING:
        _finish_unload(state, index)
        return f"finished an interrupted unload on {iface}"
    raise NodeError(f"{iface}: unknown phase {state.phase!r} in the node state")


# --------------------------------------------------------------------- load


def _pinned_programs(state: NodeState) -> tuple[str, ...]:
    """The programs a journalled load attaches from its pins."""
    guard = tuple(abi.GUARD_PROGRAMS) if state.qdisc_bypass_guard == node_guard.LSM else ()
    return guard + ATTACH_ORDER


def _guard_decision(obj: BpfObject, rules: list[dict[str, Any]] | None, allow_qdisc_bypass: bool) -> str:
    """Before load: guard this namespace (node_guard.LSM), or say why not. A load that seals
    and cannot be guarded is refused unless the operator accepts the risk, by name."""
    seals = any(r.get("action") == "seal" for r in rules) if rules else True  # no rules known: assume it seals
    has_guard = node_guard.programs_of(obj) == list(abi.GUARD_PROGRAMS)
    if not seals or not {m.name for m in obj.maps()} >= set(abi.SEAL_INSTALL_MAPS):
        return node_guard.NOT_NEEDED
    allow_qdisc_bypass = allow_qdisc_bypass or os.environ.get(ALLOW_QDISC_BYPASS_ENV) == "1"
    reason = node_guard.unavailable_reason() if has_guard else \
        "this bundle's data plane has no bypass guard (compiled before it existed: compile it again)"
    if reason is None:
        node_guard.request(obj)
        return node_guard.LSM
    if not allow_qdisc_bypass:
        raise NodeError(f"{reason}; a packet socket with PACKET_QDISC_BYPASS or an AF_XDP socket in "
                        f"this namespace could then send sealed flows in plaintext. Refused; pass "
                        f"--allow-qdisc-bypass to accept that risk")
    return node_guard.ACCEPTED_RISK


def _check_rollback(policy_name: str, version: int, signer: str, force: bool) -> None:
    if not policy_name or not signer:
        return
    highest = highest_version(DURABLE_DIR, signer, policy_name)
    if highest is not None and version < highest and not force:
        raise NodeError(f"policy {policy_name!r} version {version} is older than version {highest}, "
                        f"which this node has run: refused as a rollback (pass --force to load it anyway)")


def _check_epochs_forward(previous: NodeState | None, keys: seal_keys.KeyFile, force: bool) -> dict[str, int]:
    """The epochs the key file seals with, per direction; refuses one older than what ran before."""
    epochs: dict[str, int] = {}
    for pair in keys.pairs:
        a, b = pair.domains
        for direction in (f"{a}->{b}", f"{b}->{a}"):
            epochs[direction] = pair.current[0]
            old = previous.epochs.get(direction) if previous else None
            if old is not None and pair.current[0] < old and not force:
                raise NodeError(f"{direction}: epoch {pair.current[0]} is older than the running epoch {old}; "
                                f"epochs only move forward")
    return epochs


def _reuse_replay_maps(obj: BpfObject, previous: NodeState | None) -> bool:
    """Give the new load the running load's stream table (all its maps, or none: a stream's set
    depends on the table's salt), when both have the same layout. True when it was given."""
    if previous is None or not previous.sealing:
        return False
    olds: list[Map] = []
    try:
        for name in REPLAY_MAPS:
            olds.append(Map.from_fd(get_pinned(os.path.join(previous.pin_dir, name)), owns_fd=True))
        news = [obj.map(name) for name in REPLAY_MAPS]
    except (LibbpfError, KeyError):
        for m in olds:
            m.close()
        return False
    try:
        if any((o.key_size, o.value_size, o.max_entries) != (n.key_size, n.value_size, n.max_entries)
               for o, n in zip(olds, news)):
            return False
        for name, old in zip(REPLAY_MAPS, olds):
            obj.reuse_map(name, old.fd)
        return True
    finally:
        for m in olds:
            m.close()


def load_object(object_bytes: bytes, *, iface: str, netns: str | None, measurement: str,
                policy: str, domain_ids: dict[str, int] | None = None,
                keys: seal_keys.KeyFile | None = None, keys_path: str = "<keys>",
                policy_name: str = "", policy_version: int = 0, signer: str = "",
                rules: list[dict[str, Any]] | None = None, force: bool = False,
                allow_qdisc_bypass: bool = False) -> NodeState:
    """Load the (already verified) object, install keys, pin, journal, then attach the bypass guard,
    ingress and egress. `allow_qdisc_bypass`: load a sealing policy even where the guard cannot run."""
    try:
        index = ifindex(iface, netns)  # fails before anything is loaded if the interface is missing
        ensure_bpffs()
        with _exclusive(iface, netns):
            recover(iface, netns)
            previous = read_state(iface, netns)
            _check_rollback(policy_name, policy_version, signer, force)
            epochs = _check_epochs_forward(previous, keys, force) if keys is not None else {}
            sender = node_address(iface, netns) if keys is not None else None
            obj = BpfObject.open_memory(object_bytes, "sealnet")
            try:
                reused = _reuse_replay_maps(obj, previous)
                guard = _guard_decision(obj, rules, allow_qdisc_bypass)
                obj.load()  # the kernel verifier: a refusal leaves the running programs in place
                if guard == node_guard.LSM:
                    node_guard.configure(obj, netns)
                programs = {name: obj.program(name) for name in (EGRESS, INGRESS)}
                handles = seal_handles(obj)
                if handles is not None and not reused:  # no running table to take windows from
                    table = replay_table.ReplayTable.of_object(obj)
                    replay_store.restore(table, replay_store.store_path(DURABLE_DIR, slug(iface, netns)))
                    table.salt_map.freeze()  # the table's for good: no one re-aims its sets
                if keys is not None:
                    if handles is None:
                        raise NodeError("keys given, but this bundle's data plane has no sealing path")
                    assert sender is not None
                    seal_keys.install(handles, keys, domain_ids or {}, sender=sender, ledger_dir=DURABLE_DIR,
                                      path=keys_path)
                names = {m.name for m in obj.maps()}
                for name in FROZEN_MAPS:
                    if name in names and not _holds_kptrs(obj.map(name)):
                        obj.map(name).freeze()
                pin_dir = _pin_dir_of(iface, netns, programs[EGRESS].info().id)
                os.makedirs(pin_dir, mode=0o700)
                try:
                    for name in PINNED_MAPS + (SEAL_PINNED_MAPS if handles else ()):
                        pin_fd(obj.map(name).fd, os.path.join(pin_dir, name))
                    for name, prog in programs.items():
                        pin_fd(prog.fd, os.path.join(pin_dir, name))
                    if handles:
                        pin_fd(handles.install_fd, os.path.join(pin_dir, seal_keys.INSTALL_PROGRAM))
                        pin_fd(obj.program(FORGET_PROGRAM).fd, os.path.join(pin_dir, FORGET_PROGRAM))
                    if guard == node_guard.LSM:
                        node_guard.pin_programs(obj, pin_dir)
                except Exception:
                    _remove_pins(pin_dir)  # not journalled yet: the running load is untouched
                    raise
                state = NodeState(
                    iface=iface, netns=netns, measurement=measurement, policy=policy,
                    program_tags={n: p.tag().hex() for n, p in programs.items()},
                    program_ids={n: p.info().id for n, p in programs.items()},
                    pin_dir=pin_dir, domain_ids=dict(domain_ids or {}),
                    sealing=handles is not None, sender=sender, phase=LOADING,
                    previous_pin_dir=previous.pin_dir if previous else None,
                    interface_change=previous.interface_change if previous else {},
                    clsact_created=previous.clsact_created if previous else not _clsact_exists(iface, netns),
                    policy_name=policy_name, policy_version=policy_version, signer=signer,
                    rules=list(rules or []),
                    sealed_rules=sum(1 for r in rules or [] if r.get("action") == "seal"),
                    epochs=epochs if keys is not None else (previous.epochs if previous else {}),
                    qdisc_bypass_guard=guard)
            finally:
                if keys is not None:
                    keys.wipe()
                obj.close()  # pinned programs and maps stay alive in the kernel
            failpoints.hit("load:pinned")
            write_state(STATE_DIR, state)  # the journal: from here on, the next command rolls forward
            failpoints.hit("load:journalled")
            try:
                _finish_load(state, index)
            except Exception:
                _roll_back(state, previous, index)
                raise
            if signer and policy_name:
                record_version(DURABLE_DIR, signer, policy_name, policy_version)
            return state
    except StateError as exc:
        raise NodeError(str(exc)) from None


def _roll_back(state: NodeState, previous: NodeState | None, index: int) -> None:
    """A load that failed after its journal: put the old load back (or nothing, on a first load)."""
    if previous is not None:
        _attach_from_pins(previous, index)
        write_state(STATE_DIR, previous)
        _remove_pins(state.pin_dir)
    else:
        _finish_unload(state, index)


# --------------------------------------------------------------------- keys


def install_keys(iface: str, netns: str | None, keys: seal_keys.KeyFile, keys_path: str = "<keys>",
                 *, force: bool = False) -> NodeState:
    """Replace the keys of the running data plane (what the control plane does on rotation)."""
    try:
        with _exclusive(iface, netns):
            recover(iface, netns)
            state = read_state(iface, netns)
            if state is None:
                raise NodeError(f"nothing is loaded on {iface}")
            epochs = _check_epochs_forward(state, keys, force)
            sender = state.sender or node_address(iface, netns)
            handles = pinned_seal_handles(state)
            try:
                seal_keys.install(handles, keys, state.domain_ids, sender=sender, ledger_dir=DURABLE_DIR,
                                  path=keys_path, allow_epoch_rollback=force)
            finally:
                close_pinned_handles(handles)
            state.sender, state.epochs = sender, epochs
            write_state(STATE_DIR, state)
            return state
    except StateError as exc:
        raise NodeError(str(exc)) from None


def retire_previous_epochs(iface: str, netns: str | None) -> list[tuple[int, int]]:
    """End the grace period of the last rotation: only current and next stay accepted, and the
    replay windows of the released epochs leave the stream table."""
    with _exclusive(iface, netns):
        state = read_state(iface, netns)
        if state is None or not state.sealing:
            return []
        handles = pinned_seal_handles(state)
        try:
            released = seal_keys.retire_previous(handles)
        finally:
            close_pinned_handles(handles)
        if released:
            forget_fd = get_pinned(os.path.join(state.pin_dir, FORGET_PROGRAM))
            try:
                replay_table.forget(forget_fd, released)
            finally:
                os.close(forget_fd)
        return released


# --------------------------------------------------------------------- unload


def unload(iface: str, netns: str | None, *, open_sealed_flows: bool = False) -> list[str]:
    """Detach egress then ingress, remove our clsact qdisc, undo the interface, drop pins and state.

    Refused for a data plane with seal rules unless `open_sealed_flows`: their
    traffic would leave in plaintext the moment the programs are gone."""
    try:
        index: int | None = ifindex(iface, netns)
    except Exception as exc:
        index = None
        missing = str(exc)
    try:
        with _exclusive(iface, netns):
            state = read_state(iface, netns)
            if state is not None and state.phase == UNLOADING:
                return _finish_unload(state, index)
            if index is not None:
                recover(iface, netns)
                state = read_state(iface, netns)
            if state is None:
                if index is None:
                    raise NodeError(missing)
                attached = attached_program_ids(iface, netns)
                if all(v is None for v in attached.values()):
                    raise NodeError(f"nothing is loaded on {iface}")
                _detach_ours(index, netns)  # an orphan of ours (its state was lost): remove it
                return [f"{iface}: removed programs of ours that had no state"]
            if (state.sealed_rules or (state.sealing and not state.rules)) and not open_sealed_flows:
                raise NodeError(f"{iface}: {state.policy} seals traffic; unloading would send it in plaintext, "
                                f"so nothing was changed. To open the sealed flows anyway: sealnet node unload "
                                f"--iface {iface}{f' --netns {netns}' if netns else ''} --open-sealed-flows")
            save_replay_windows(state)
            state.phase = UNLOADING
            write_state(STATE_DIR, state)
            failpoints.hit("unload:journalled")
            problems = _finish_unload(state, index)
            if index is None:
                problems.append(f"{iface}: {missing}")
            return problems
    except StateError as exc:
        raise NodeError(str(exc)) from None


def save_replay_windows(state: NodeState) -> int:
    """Keep the running load's replay windows on disk for the next first load (runtime/replay_store.py)."""
    if not state.sealing:
        return 0
    maps: list[Map] = []
    try:
        for name in REPLAY_MAPS:
            maps.append(Map.from_fd(get_pinned(os.path.join(state.pin_dir, name)), owns_fd=True))
        return replay_store.save(replay_table.ReplayTable(*maps),
                                 replay_store.store_path(DURABLE_DIR, slug(state.iface, state.netns)))
    except LibbpfError:
        return 0  # pins gone: nothing to keep
    finally:
        for m in maps:
            m.close()


def attached_program_ids(iface: str, netns: str | None) -> dict[str, int | None]:
    index = ifindex(iface, netns)
    with entered(netns):
        return {EGRESS: query_tc(index, False, TC_PRIORITY, TC_HANDLE),
                INGRESS: query_tc(index, True, TC_PRIORITY, TC_HANDLE)}
