"""The data plane's stream table (bpf_templates/include/seal_replay.h) as user space sees it.

Three maps make one table and travel together (abi.SEAL_REPLAY_MAPS): the
sets (each with its ways and its lock), the floors (per group of sets, one
per key slot) and the salt of the set hash. A stream's set depends on the
salt, so a table is only ever carried to a new load whole, and the record on
disk keeps the salt with the contents. User space writes the table only
before a load is attached (`make_new`, `place`): once packets flow, a set
written back from user space would undo what the kernel accepted meanwhile,
so removing a released epoch's windows is the kernel's job (`forget`: the
seal_replay_forget program, under each set's lock).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from sealnet.contracts import abi
from sealnet.contracts.libbpf import BpfObject, Map, run_syscall_fd

ALL_SEEN = b"\xff" * (8 * abi.SEAL_REPLAY_WORDS)
_SET, _WAY = abi.SEAL_SET, abi.SEAL_WAY


@dataclass(frozen=True)
class Stream:
    sender: int
    pair: int
    epoch: int
    cpu: int
    top: int

    @property
    def word(self) -> int:
        return abi.seal_stream_word(self.sender, self.pair, self.epoch, self.cpu)

    @property
    def key_slot(self) -> int:
        return abi.seal_key_slot(self.pair, self.epoch)


@dataclass
class Way:
    stream: int = 0  # 0: free
    used: int = 0
    top: int = 0
    ring: bytes = bytes(8 * abi.SEAL_REPLAY_WORDS)


def decode_set(value: bytes | bytearray) -> list[Way]:
    at = _SET.offset("way")
    ways = []
    for i in range(abi.SEAL_REPLAY_WAYS):
        w = value[at + i * _WAY.size:at + (i + 1) * _WAY.size]
        ways.append(Way(_WAY.read(w, "stream"), _WAY.read(w, "used"), _WAY.read(w, "top"), bytes(_WAY.read(w, "ring"))))
    return ways


def _picker(record_size: int, members: list[tuple[int, str]]) -> struct.Struct:
    """One unpack that reads the given (offset, struct format) members of a record and skips the rest."""
    fmt, at = "=", 0
    for offset, member in sorted(members):
        fmt += f"{offset - at}x{member.lstrip('=<>!@')}"
        at = offset + struct.calcsize(member)
    return struct.Struct(f"{fmt}{record_size - at}x")


# Each way's (stream, top) in a set, in way order: what a saved record keeps of a set.
_STREAMS_AND_TOPS = _picker(_SET.size, [
    (_SET.offset("way") + i * _WAY.size + _WAY.offset(name), _WAY.field(name).fmt)
    for i in range(abi.SEAL_REPLAY_WAYS) for name in ("stream", "top")])


def encode_set(ways: list[Way]) -> bytes:
    return bytes(_SET.pack(way=b"".join(bytes(_WAY.pack(stream=w.stream, used=w.used, top=w.top, ring=w.ring))
                                        for w in ways)))


@dataclass
class ReplayTable:
    """The maps of one table (not owned: the caller closes them)."""

    sets: Map
    floors: Map
    salt_map: Map

    @classmethod
    def of_object(cls, obj: BpfObject) -> ReplayTable:
        return cls(*(obj.map(name) for name in abi.SEAL_REPLAY_MAPS))

    @property
    def groups(self) -> int:
        return self.floors.max_entries

    @property
    def key_slots(self) -> int:
        return self.floors.value_size // 8

    # ------------------------------------------------------------------ reading

    def salt(self) -> tuple[int, int]:
        value = self.salt_map.lookup(bytes(4)) or bytes(abi.SEAL_REPLAY_SALT.size)
        return abi.SEAL_REPLAY_SALT.read(value, "k0"), abi.SEAL_REPLAY_SALT.read(value, "k1")

    def set_of(self, sender: int, pair: int, epoch: int, cpu: int) -> int:
        return abi.seal_replay_set(abi.seal_stream_word(sender, pair, epoch, cpu), *self.salt())

    def ways(self, set_id: int) -> list[Way]:
        value = self.sets.lookup(set_id.to_bytes(4, "little"))
        if value is None:
            raise ValueError(f"set {set_id} is outside the stream table")
        return decode_set(value)

    def streams(self) -> list[Stream]:
        """Every stream in the table, with its top. One batch read of the sets, each copied under
        its lock: a way's stream and top are always one stream's, never one half-replaced by an
        eviction (the sets are not one snapshot: that needs no more than the floors read after)."""
        if self.sets.value_size != _SET.size:
            raise ValueError(f"map {self.sets.name!r}: value is {self.sets.value_size} bytes, "
                             f"struct {_SET.name} is {_SET.size}")
        values = self.sets.lookup_batch(lock=True).values
        out: list[Stream] = []
        for way_fields in _STREAMS_AND_TOPS.iter_unpack(values):
            for i in range(0, len(way_fields), 2):
                if way_fields[i]:  # 0: a free way
                    out.append(Stream(*abi.seal_stream_of(way_fields[i]), top=way_fields[i + 1]))  # type: ignore[misc]
        return out

    def floor_group(self, group: int) -> list[int]:
        value = self.floors.lookup(group.to_bytes(4, "little"))
        if value is None:
            raise ValueError(f"floor group {group} is outside the stream table")
        return list(struct.unpack(f"={self.key_slots}Q", value))

    def floor_cells(self) -> dict[tuple[int, int], int]:
        """{(group, key slot): floor} for the floors above zero."""
        out = {}
        batch = self.floors.lookup_batch()
        values, size = batch.values, batch.value_size
        zero = bytes(size)
        for i in range(batch.count):
            value = values[i * size:(i + 1) * size]
            if value == zero:
                continue  # most groups: no stream of theirs was ever evicted
            group = int.from_bytes(batch.key(i), "little")
            for slot, top in enumerate(struct.unpack(f"={self.key_slots}Q", value)):
                if top:
                    out[(group, slot)] = top
        return out

    def floor_of(self, stream: Stream) -> int:
        set_id = abi.seal_replay_set(stream.word, *self.salt())
        return self.floor_group(set_id % self.groups)[stream.key_slot]

    # ------------------------------------------------------------------ writing, before a load is attached

    def make_new(self, salt: tuple[int, int] | None = None) -> None:
        """A new table's salt: random (so no sender can choose which streams share its set), or a
        saved table's, so its streams and floors fall where they were."""
        k0, k1 = salt if salt is not None else struct.unpack("=QQ", os.urandom(16))
        self.salt_map.update(bytes(4), bytes(abi.SEAL_REPLAY_SALT.pack(k0=k0, k1=k1)))

    def place(self, streams: list[Stream], floors: dict[tuple[int, int], int]) -> int:
        """Raise the given floors ({(group, key slot): top}) and put streams in their sets, each with
        every sequence up to its top seen. A stream whose set is full raises its floor instead, as if
        it had been evicted: its old packets stay refused. Returns how many streams took a way.
        Only for a table no attached program uses yet: sets are written whole.

        Floors of a table of another shape (groups, key slots) name other cells here: every cell
        then takes the highest of them (fail closed)."""
        raised: dict[int, list[int]] = {}

        def raise_floor(group: int, slot: int, top: int) -> None:
            if group not in raised:
                raised[group] = self.floor_group(group)
            raised[group][slot] = max(raised[group][slot], top)

        if any(g >= self.groups or s >= self.key_slots for g, s in floors):
            highest = max(floors.values())
            floors = {(g, s): highest for g in range(self.groups) for s in range(self.key_slots)}
        for (group, slot), top in floors.items():
            raise_floor(group, slot, top)
        k0, k1 = self.salt()
        touched: dict[int, list[Way]] = {}
        placed = 0
        for stream in sorted(streams, key=lambda x: x.top, reverse=True):
            set_id = abi.seal_replay_set(stream.word, k0, k1)
            ways = touched.setdefault(set_id, self.ways(set_id))
            if any(w.stream == stream.word for w in ways):
                continue  # a live window knows better than the record
            free = [w for w in ways if not w.stream]
            if not free or stream.key_slot >= self.key_slots:
                raise_floor(set_id % self.groups, min(stream.key_slot, self.key_slots - 1), stream.top)
                continue
            free[0].stream, free[0].used, free[0].top, free[0].ring = stream.word, 0, stream.top, ALL_SEEN
            placed += 1
        for group, tops in raised.items():
            self.floors.update(group.to_bytes(4, "little"), struct.pack(f"={self.key_slots}Q", *tops))
        for set_id, ways in touched.items():
            self.sets.update(set_id.to_bytes(4, "little"), encode_set(ways))
        return placed


def forget(forget_fd: int, released: list[tuple[int, int]]) -> int:
    """Remove the windows and floors of released (pair, epoch) keys, in the kernel, under each
    set's lock; returns how many streams were removed."""
    removed = 0
    for pair, epoch in released:
        args = abi.SEAL_FORGET_ARGS.pack(pair=pair, epoch=epoch)
        result = run_syscall_fd(forget_fd, args, name=abi.FORGET_STREAMS_PROGRAM)
        err = abi.SEAL_FORGET_ARGS.read(result.ctx_out, "err")
        if result.retval != 0 or err != 0:
            raise OSError(-err, f"{abi.FORGET_STREAMS_PROGRAM}: pair {pair} epoch {epoch}: {os.strerror(-err)}")
        removed += abi.SEAL_FORGET_ARGS.read(result.ctx_out, "removed")
    return removed
