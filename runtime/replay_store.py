"""Replay windows kept on disk, so an unload and a new load (or a reboot) do not forget them.

A reload hands the running load's stream table to the new one (runtime/node.py,
`_reuse_replay_maps`). Between an unload and the next load, or across a
reboot, the kernel's maps are gone; this module keeps the table in the
durable directory, written at unload and every few seconds by `sealnet node
run`: its salt, each stream's `top` and every floor above zero
(runtime/replay_table.py). A first load makes its table with the same salt,
starts every saved stream with every sequence at or below `top` marked seen
and puts every floor back. A packet accepted before the save is therefore a
replay after the restore. What the saved record cannot cover: packets first
accepted after the last periodic save and before a crash or reboot (at most
`node run`'s save interval of them per stream).
"""

from __future__ import annotations

import json
import os

from sealnet.runtime.node_files import write_durably
from sealnet.runtime.replay_table import ReplayTable, Stream


def store_path(durable_dir: str, slug: str) -> str:
    return os.path.join(durable_dir, "replay", f"{slug}.json")


def save(table: ReplayTable, path: str) -> int:
    """Write the table's salt, every stream's top and every floor; returns how many streams."""
    # The sets before the floors: a stream evicted while its set is read has raised its floor
    # before the floors are read, so every top the sets miss is in the floors.
    streams = [[s.sender, s.pair, s.epoch, s.cpu, s.top] for s in table.streams()]
    floors = [[group, slot, top] for (group, slot), top in sorted(table.floor_cells().items())]
    record = {"salt": list(table.salt()), "streams": streams, "floors": floors}
    write_durably(path, json.dumps(record, separators=(",", ":")).encode())
    return len(streams)


def restore(table: ReplayTable, path: str) -> int:
    """Make a new table (no attached program uses it yet) from the record: its salt (a random one
    when there is no record, or the record predates salts), its floors and its streams. Returns how
    many streams took a way (any other raised its floor: still refused, as if evicted).

    A record that cannot be read restores nothing (and says so by raising):
    the caller decides whether to load without it."""
    try:
        with open(path) as fh:
            record = json.load(fh)
    except FileNotFoundError:
        table.make_new()
        return 0
    salt = record.get("salt")
    table.make_new((int(salt[0]), int(salt[1])) if salt else None)
    streams = [Stream(sender, pair, epoch, cpu, top) for sender, pair, epoch, cpu, top in record["streams"]]
    floors = {(int(group), int(slot)): int(top) for group, slot, top in record.get("floors", [])}
    return table.place(streams, floors)
