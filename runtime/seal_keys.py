"""Static keying: a key file's pair keys, derived per direction and installed into the data plane.

The data plane does not care where keys come from: this module and the
control plane both end in `install`, which creates the kernel's cipher
contexts through the bundle's own `seal_install_key` syscall program (so the
AES driver is the measured one), then sets the sender id and the epochs
egress seals with. The file format is in docs/wire-format.md ("Static keys").

Nonce safety (docs/wire-format.md, "Nonce uniqueness"): the sender id is
chosen by the caller (the node agent uses the node's own address), and every
`install` reserves a fresh sequence generation in the durable ledger
(runtime/nonce_ledger.py) and moves the load's per-CPU counters into it
before any key it installs can seal. Key bytes are kept in bytearrays and
zeroed after use (best effort: Python and HKDF make short-lived copies).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from sealnet.contracts import abi
from sealnet.contracts.libbpf import Map, run_syscall_fd
from sealnet.runtime import failpoints, nonce_ledger
from sealnet.runtime.node_files import NodeFileError, loose_permissions, read_bounded
from sealnet.runtime.seal_wire import AES_128_CCM, PAIR_KEY_LEN, SUITES, Suite, direction_key

KEY_FILE_FORMAT = 1
MAX_SENDER = 0xFFFFFFFF
INSTALL_PROGRAM = abi.INSTALL_KEY_PROGRAM
MAX_KEY_FILE_BYTES = 1 << 20


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and the field."""


class KeyInstallError(RuntimeError):
    """The kernel refused a key, an epoch went backwards, or no fresh sequence generation."""


@dataclass(frozen=True)
class PairKeys:
    domains: tuple[str, str]
    current: tuple[int, bytearray]
    next: tuple[int, bytearray] | None


@dataclass(frozen=True)
class KeyFile:
    sender: int | None  # optional and advisory: the node agent seals as its own address
    pairs: tuple[PairKeys, ...]

    def wipe(self) -> None:
        for pair in self.pairs:
            for entry in (pair.current, pair.next):
                if entry is not None:
                    entry[1][:] = bytes(len(entry[1]))


def _field(path: str, where: str, message: str) -> KeyFileError:
    return KeyFileError(f"{path}: {where}: {message}")


def _epoch_key(path: str, where: str, value: Any) -> tuple[int, bytearray]:
    if not isinstance(value, dict) or set(value) != {"epoch", "key"}:
        raise _field(path, where, 'expected {"epoch": N, "key": "<64 hex digits>"}')
    epoch = value["epoch"]
    if not isinstance(epoch, int) or isinstance(epoch, bool) or not 0 <= epoch < 2**32:
        raise _field(path, f"{where}.epoch", "must be an integer from 0 to 2^32-1")
    text = value["key"]
    if not isinstance(text, str) or len(text) != 2 * PAIR_KEY_LEN:
        raise _field(path, f"{where}.key", f"must be {2 * PAIR_KEY_LEN} hex digits ({PAIR_KEY_LEN} bytes)")
    try:
        key = bytearray.fromhex(text)
    except ValueError:
        raise _field(path, f"{where}.key", "is not hexadecimal") from None
    if not any(key):
        raise _field(path, f"{where}.key", "is all zeros")
    return epoch, key


def parse_key_file(text: str, path: str = "<keys>") -> KeyFile:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    except RecursionError:
        raise KeyFileError(f"{path}: not a key file: nested too deeply") from None
    if not isinstance(doc, dict):
        raise _field(path, "top level", "expected an object")
    unknown = set(doc) - {"sealnet_keys", "sender", "pairs"}
    if unknown:
        raise _field(path, sorted(unknown)[0], "unknown field")
    if doc.get("sealnet_keys") != KEY_FILE_FORMAT:
        raise _field(path, "sealnet_keys", f"must be {KEY_FILE_FORMAT} (the key file format)")
    sender = doc.get("sender")
    if sender is not None and (not isinstance(sender, int) or isinstance(sender, bool) or not 1 <= sender <= MAX_SENDER):
        raise _field(path, "sender", "must be an integer from 1 to 2^32-1")
    pairs_doc = doc.get("pairs")
    if not isinstance(pairs_doc, list):
        raise _field(path, "pairs", "expected a list")
    pairs: list[PairKeys] = []
    seen: set[frozenset[str]] = set()
    for i, item in enumerate(pairs_doc):
        where = f"pairs[{i}]"
        if not isinstance(item, dict) or not {"domains", "current"} <= set(item) <= {"domains", "current", "next"}:
            raise _field(path, where, 'expected {"domains": [A, B], "current": {...}, "next": {...}}')
        names = item["domains"]
        if (not isinstance(names, list) or len(names) != 2 or not all(isinstance(n, str) and n for n in names)
                or names[0] == names[1]):
            raise _field(path, f"{where}.domains", "must name two different domains")
        if frozenset(names) in seen:
            raise _field(path, f"{where}.domains", f"pair {names[0]}/{names[1]} is listed twice")
        seen.add(frozenset(names))
        current = _epoch_key(path, f"{where}.current", item["current"])
        nxt = _epoch_key(path, f"{where}.next", item["next"]) if "next" in item else None
        if nxt is not None and nxt[0] % 256 != (current[0] + 1) % 256:
            raise _field(path, f"{where}.next.epoch", f"must follow current epoch {current[0]}")
        pairs.append(PairKeys((names[0], names[1]), current, nxt))
    return KeyFile(sender=sender, pairs=tuple(pairs))


def format_key_file(sender: int | None, pairs: dict[tuple[str, str], dict[str, tuple[int, bytes]]]) -> str:
    """A key file's text: {(a, b): {"current": (epoch, pair key), "next": ...}} (for labs and tests)."""
    return json.dumps({
        "sealnet_keys": KEY_FILE_FORMAT, **({"sender": sender} if sender is not None else {}),
        "pairs": [{"domains": list(names), **{k: {"epoch": e, "key": key.hex()} for k, (e, key) in v.items()}}
                  for names, v in pairs.items()]}, indent=1)


def load_key_file(path: str, *, allow_loose_permissions: bool = False) -> KeyFile:
    """Read a key file: a regular file, at most 1 MiB, readable by its owner only (unless allowed)."""
    loose = loose_permissions(path)
    if loose and not allow_loose_permissions:
        raise KeyFileError(f"{path}: refused: {loose}; chmod 600 it, or pass --allow-loose-key-permissions")
    try:
        data = read_bounded(path, MAX_KEY_FILE_BYTES, "key file")
    except NodeFileError as exc:
        raise KeyFileError(str(exc)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not UTF-8 text") from None
    return parse_key_file(text, path)


@dataclass
class DirectionKey:
    src: str
    dst: str
    src_id: int
    dst_id: int
    epoch: int
    key: bytearray
    current: bool


def direction_keys(keys: KeyFile, domain_ids: dict[str, int], path: str = "<keys>",
                   suite: Suite = AES_128_CCM) -> list[DirectionKey]:
    out: list[DirectionKey] = []
    for i, pair in enumerate(keys.pairs):
        for name in pair.domains:
            if name not in domain_ids:
                raise _field(path, f"pairs[{i}].domains", f"domain {name!r} is not in the bundle's policy")
        a, b = pair.domains
        for src, dst in ((a, b), (b, a)):
            for entry, current in ((pair.current, True), (pair.next, False)):
                if entry is None:
                    continue
                epoch, pair_key = entry
                derived = bytearray(direction_key(bytes(pair_key), src, dst, epoch, suite))
                out.append(DirectionKey(src, dst, domain_ids[src], domain_ids[dst], epoch % 256, derived, current))
    return out


# --------------------------------------------------------------------- installation


@dataclass
class SealHandles:
    """What installation needs of a loaded data plane: four maps and the install program."""

    keys: Map
    tx: Map
    config: Map
    seq: Map
    install_fd: int

    def slot(self, pair: int, epoch: int) -> int:
        return abi.seal_key_slot(pair, epoch)

    def tx_epochs(self) -> dict[int, int]:
        """pair -> the epoch egress seals with now (mod 256), for the pairs that seal."""
        out = {}
        for pair in range(self.tx.max_entries):
            value = self.tx.lookup(pair.to_bytes(4, "little"))
            if value is not None:
                epoch, active = abi.SEAL_TX.read(value, "epoch"), abi.SEAL_TX.read(value, "active")
                if active:
                    out[pair] = epoch
        return out

    def slot_epoch(self, slot: int) -> int | None:
        """The epoch installed in a slot, None when the slot is empty."""
        value = self.keys.lookup(slot.to_bytes(4, "little"))
        if value is None or not abi.SEAL_KEY.read(value, "installed"):
            return None
        return int(abi.SEAL_KEY.read(value, "epoch"))

    def installed_slots(self) -> set[int]:
        out = set()
        for slot in range(self.keys.max_entries):
            value = self.keys.lookup(slot.to_bytes(4, "little"))
            if value is not None and abi.SEAL_KEY.read(value, "installed"):
                out.add(slot)
        return out


def _run_install(handles: SealHandles, slot: int, epoch: int, key: bytearray | None) -> None:
    layout = abi.SEAL_KEY_ARGS
    args = layout.pack(slot=slot, epoch=epoch, remove=int(key is None))
    if key is not None:
        args[layout.offset("key"):layout.offset("key") + len(key)] = key
    try:
        result = run_syscall_fd(handles.install_fd, args, name=INSTALL_PROGRAM)
    finally:
        args[:] = bytes(len(args))
    err = layout.read(result.ctx_out, "err")
    if result.retval != 0 or err != 0:
        raise KeyInstallError(f"the kernel refused the key for slot {slot}: {os.strerror(-err) if err < 0 else err}")


def _epoch_after(old: int, new: int) -> bool:
    """`new` is `old` or later, in RFC 1982 serial arithmetic on the 8-bit epoch."""
    return (new - old) % 256 < 128


def install(handles: SealHandles, keys: KeyFile, domain_ids: dict[str, int], *, sender: int,
            ledger_dir: str, path: str = "<keys>", allow_epoch_rollback: bool = False) -> list[DirectionKey]:
    """Make the data plane's keys those of `keys`; returns what was installed (keys zeroed).

    Order, so that nothing is ever sealed under a repeated nonce or lost in
    a rotation: (1) receive keys (current and next) go in; the epoch each
    direction sealed with until now stays installed as `previous`, so a
    peer that has not switched yet is still opened; (2) a fresh sequence
    generation is reserved durably and the counters moved into it; (3) only
    then the sender id and the epochs egress seals with. Slots no longer
    wanted (older than previous) are released: fail closed for them.
    """
    # The suite the data plane was built with (the policy's `cipher`): its key slots say which.
    suite = SUITES[int(abi.seal_suite_of_key_slot(handles.keys.value_size))]
    directions = direction_keys(keys, domain_ids, path, suite)
    try:
        if not 1 <= sender <= MAX_SENDER:
            raise KeyInstallError(f"sender id {sender} is outside 1..2^32-1")
        n_domains = len(domain_ids)  # the policy's: its ids are 1..n_domains
        if handles.tx.max_entries != abi.seal_pair_count(n_domains):
            raise KeyInstallError(f"this data plane's key tables are not those of a policy with {n_domains} domains")
        for d in directions:
            if max(d.src_id, d.dst_id) > n_domains:
                raise KeyInstallError(f"domain id {max(d.src_id, d.dst_id)} is outside this data plane's tables")

        def pair_of(d: DirectionKey) -> int:
            return abi.seal_pair(d.src_id, d.dst_id, n_domains)

        sealing_now = handles.tx_epochs()
        new_current = {pair_of(d): d for d in directions if d.current}
        for pair, d in new_current.items():
            old = sealing_now.get(pair)
            if old is not None and not _epoch_after(old, d.epoch) and not allow_epoch_rollback:
                raise KeyInstallError(f"{path}: {d.src}->{d.dst}: epoch {d.epoch} is older than the running "
                                      f"epoch {old}; epochs only move forward")
        wanted: dict[int, DirectionKey] = {}
        for d in directions:
            slot = handles.slot(pair_of(d), d.epoch)
            if slot in wanted and wanted[slot].epoch != d.epoch:
                raise KeyInstallError(f"{path}: {d.src}->{d.dst}: epochs {wanted[slot].epoch} and {d.epoch} "
                                      f"share a key slot")
            wanted[slot] = d
        kept: set[int] = set()  # the previous sealing epoch of each pair, kept for receivers' grace
        for pair, old in sealing_now.items():
            slot = handles.slot(pair, old)
            if slot not in wanted and pair in new_current and new_current[pair].epoch != old:
                kept.add(slot)
        for slot, d in wanted.items():
            _run_install(handles, slot, d.epoch, d.key)
        failpoints.hit("keys:receive")
        generation = nonce_ledger.reserve_generation(ledger_dir, sender)
        handles.seq.update(bytes(4), nonce_ledger.sequence_base(generation).to_bytes(8, "little"))
        failpoints.hit("keys:generation")
        handles.config.update(bytes(4), abi.SEAL_CONFIG.pack(sender=sender))
        for pair in range(handles.tx.max_entries):
            current = new_current.get(pair)
            handles.tx.update(pair.to_bytes(4, "little"),
                              abi.SEAL_TX.pack(epoch=current.epoch if current else 0, active=int(current is not None)))
        for slot in handles.installed_slots() - set(wanted) - kept:
            _run_install(handles, slot, 0, None)  # revoked: fail closed for that pair
        return directions
    except nonce_ledger.LedgerError as exc:
        raise KeyInstallError(str(exc)) from None
    finally:
        for d in directions:
            d.key[:] = bytes(len(d.key))
        keys.wipe()


def retire_previous(handles: SealHandles) -> list[tuple[int, int]]:
    """End the grace period: release every slot holding neither the sealing epoch nor the one
    after it. Returns the (pair, epoch) keys released."""
    sealing = handles.tx_epochs()
    keep = set()
    for pair, epoch in sealing.items():
        for wanted in (epoch, (epoch + 1) % 256):
            slot = handles.slot(pair, wanted)
            if handles.slot_epoch(slot) == wanted:
                keep.add(slot)
    released = []
    for slot in sorted(handles.installed_slots() - keep):
        epoch = handles.slot_epoch(slot)
        _run_install(handles, slot, 0, None)
        released.append((slot // abi.SEAL_EPOCH_SLOTS, int(epoch or 0)))
    return released
