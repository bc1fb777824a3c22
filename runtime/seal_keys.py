"""Static keying: a key file's pair keys, derived per direction and installed into the data plane.

The data plane does not care where keys come from: this module and the
control plane both end in `install`, which creates the kernel's cipher
contexts through the bundle's own `seal_install_key` syscall program (so the
AES driver is the measured one), then sets the sender id and the epochs
egress seals with. The file format is in docs/wire-format.md ("Static keys").

Nonce safety: sequence counters restart at 1 with every program load, so a
sender id may be used with a key by one load only. A ledger in the node's
state directory records (sender, key fingerprint) -> program id and refuses
reuse under another load. Key bytes are kept in bytearrays and zeroed after
use (best effort: Python and HKDF make short-lived copies).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Any

from sealnet.contracts.libbpf import Map, run_syscall_fd
from sealnet.runtime.seal_wire import PAIR_KEY_LEN, direction_key

KEY_FILE_FORMAT = 1
MAX_SENDER = 0xFFFFFFFF
INSTALL_PROGRAM = "seal_install_key"
SEAL_MAPS = ("seal_keys", "seal_tx", "seal_config", "seal_replay")
LEDGER_NAME = "senders.json"
_ARGS = struct.Struct("<32sIIIi")  # struct seal_key_args
_SEAL_KEY_INSTALLED_AT = 20  # struct seal_key: two kptrs (hidden from user space), epoch, installed


class KeyFileError(ValueError):
    """A key file that cannot be used; the message names the file and the field."""


class KeyInstallError(RuntimeError):
    """The kernel refused a key, or the ledger refused a sender id."""


@dataclass(frozen=True)
class PairKeys:
    domains: tuple[str, str]
    current: tuple[int, bytearray]
    next: tuple[int, bytearray] | None


@dataclass(frozen=True)
class KeyFile:
    sender: int
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
    if not isinstance(doc, dict):
        raise _field(path, "top level", "expected an object")
    unknown = set(doc) - {"sealnet_keys", "sender", "pairs"}
    if unknown:
        raise _field(path, sorted(unknown)[0], "unknown field")
    if doc.get("sealnet_keys") != KEY_FILE_FORMAT:
        raise _field(path, "sealnet_keys", f"must be {KEY_FILE_FORMAT} (the key file format)")
    sender = doc.get("sender")
    if not isinstance(sender, int) or isinstance(sender, bool) or not 1 <= sender <= MAX_SENDER:
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


def format_key_file(sender: int, pairs: dict[tuple[str, str], dict[str, tuple[int, bytes]]]) -> str:
    """A key file's text: {(a, b): {"current": (epoch, pair key), "next": ...}} (for labs and tests)."""
    return json.dumps({
        "sealnet_keys": KEY_FILE_FORMAT, "sender": sender,
        "pairs": [{"domains": list(names), **{k: {"epoch": e, "key": key.hex()} for k, (e, key) in v.items()}}
                  for names, v in pairs.items()]}, indent=1)


def load_key_file(path: str) -> KeyFile:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read: {exc.strerror}") from None
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

    def fingerprint(self) -> str:
        """A one-way name for the key in the ledger (never the key itself)."""
        return hashlib.sha384(b"sealnet/v1 ledger\0" + bytes(self.key)).hexdigest()[:32]


def direction_keys(keys: KeyFile, domain_ids: dict[str, int], path: str = "<keys>") -> list[DirectionKey]:
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
                derived = bytearray(direction_key(bytes(pair_key), src, dst, epoch))
                out.append(DirectionKey(src, dst, domain_ids[src], domain_ids[dst], epoch % 256, derived, current))
    return out


# --------------------------------------------------------------------- the ledger


def _ledger_path(state_dir: str) -> str:
    return os.path.join(state_dir, LEDGER_NAME)


def _read_ledger(state_dir: str) -> dict[str, int]:
    try:
        with open(_ledger_path(state_dir)) as fh:
            data = json.load(fh)
        return {str(k): int(v) for k, v in data.items()}
    except FileNotFoundError:
        return {}


def claim_senders(state_dir: str, sender: int, keys: list[DirectionKey], program_id: int) -> None:
    """Record (sender, key) for this load; refuse one already used by another load."""
    ledger = _read_ledger(state_dir)
    entries = {f"{sender}:{k.fingerprint()}": k for k in keys}
    for entry, k in entries.items():
        owner = ledger.get(entry)
        if owner is not None and owner != program_id:
            raise KeyInstallError(
                f"sender {sender} was already used with the {k.src}->{k.dst} key of epoch {k.epoch} "
                f"by another program load on this node; its sequence numbers would repeat nonces. "
                f"Give the key file a fresh sender id")
    ledger.update(dict.fromkeys(entries, program_id))
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    tmp = _ledger_path(state_dir) + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(ledger, fh, indent=1, sort_keys=True)
    os.replace(tmp, _ledger_path(state_dir))


# --------------------------------------------------------------------- installation


@dataclass
class SealHandles:
    """What installation needs of a loaded data plane: three maps and the install program."""

    keys: Map
    tx: Map
    config: Map
    install_fd: int

    @property
    def domain_slots(self) -> int:
        return math.isqrt(self.tx.max_entries)

    def pair(self, src_id: int, dst_id: int) -> int:
        return src_id * self.domain_slots + dst_id

    def installed_slots(self) -> set[int]:
        out = set()
        for slot in range(self.keys.max_entries):
            value = self.keys.lookup(slot.to_bytes(4, "little"))
            if value is not None and struct.unpack_from("<I", value, _SEAL_KEY_INSTALLED_AT)[0]:
                out.add(slot)
        return out


def _run_install(handles: SealHandles, slot: int, epoch: int, key: bytearray | None) -> None:
    args = bytearray(_ARGS.pack(bytes(32), slot, epoch, int(key is None), 0))
    if key is not None:
        args[:len(key)] = key
    try:
        result = run_syscall_fd(handles.install_fd, args, name=INSTALL_PROGRAM)
    finally:
        args[:] = bytes(len(args))
    err = _ARGS.unpack(result.ctx_out)[-1]
    if result.retval != 0 or err != 0:
        raise KeyInstallError(f"the kernel refused the key for slot {slot}: {os.strerror(-err) if err < 0 else err}")


def install(handles: SealHandles, keys: KeyFile, domain_ids: dict[str, int], *, program_id: int,
            state_dir: str, path: str = "<keys>") -> list[DirectionKey]:
    """Make the data plane's keys exactly those of `keys`; returns what was installed (keys zeroed)."""
    directions = direction_keys(keys, domain_ids, path)
    try:
        for d in directions:
            if max(d.src_id, d.dst_id) >= handles.domain_slots:
                raise KeyInstallError(f"domain id {max(d.src_id, d.dst_id)} is outside this data plane's tables")
        claim_senders(state_dir, keys.sender, directions, program_id)
        wanted: dict[int, DirectionKey] = {}
        for d in directions:
            wanted[handles.pair(d.src_id, d.dst_id) * 2 + d.epoch % 2] = d
        for slot, d in wanted.items():
            _run_install(handles, slot, d.epoch, d.key)
        handles.config.update(bytes(4), struct.pack("<II", keys.sender, 0))
        tx_epochs = {handles.pair(d.src_id, d.dst_id): d.epoch for d in directions if d.current}
        for pair in range(handles.tx.max_entries):
            epoch = tx_epochs.get(pair)
            handles.tx.update(pair.to_bytes(4, "little"), struct.pack("<II", epoch or 0, epoch is not None))
        for slot in handles.installed_slots() - set(wanted):
            _run_install(handles, slot, 0, None)  # revoked: fail closed for that pair
        return directions
    finally:
        for d in directions:
            d.key[:] = bytes(len(d.key))
        keys.wipe()
