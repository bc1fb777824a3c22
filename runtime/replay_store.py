"""Replay windows kept on disk, so an unload and a new load (or a reboot) do not forget them.

A reload hands the running load's window map to the new one (runtime/node.py,
`_reuse_replay_map`). Between an unload and the next load, or across a
reboot, the kernel's map is gone; this module keeps each stream's `top` in
the durable directory, written at unload and every few seconds by
`sealnet node run`, and a first load starts every stream there with every
sequence at or below `top` marked seen. A packet accepted before the save is
therefore a replay after the restore. What the saved record cannot cover:
packets first accepted after the last periodic save and before a crash or
reboot (at most `node run`'s save interval of them per stream).
"""

from __future__ import annotations

import json
import os

from sealnet.contracts import abi
from sealnet.contracts.libbpf import LibbpfError, Map
from sealnet.runtime.node_files import write_durably

ALL_SEEN = b"\xff" * (8 * abi.SEAL_REPLAY_WORDS)


def store_path(durable_dir: str, slug: str) -> str:
    return os.path.join(durable_dir, "replay", f"{slug}.json")


def save(replay: Map, path: str) -> int:
    """Write every stream's top; returns how many streams."""
    streams = []
    for key, value in replay.items():
        s = abi.SEAL_STREAM.unpack(key)
        streams.append([s["sender"], s["pair"], s["epoch"], s["cpu"], abi.SEAL_WINDOW.read(value, "top")])
    write_durably(path, json.dumps({"streams": streams}, separators=(",", ":")).encode())
    return len(streams)


def restore(replay: Map, path: str) -> int:
    """Start each saved stream at its top, everything at or below it seen; returns how many.

    A record that cannot be read restores nothing (and says so by raising):
    the caller decides whether to load without it."""
    try:
        with open(path) as fh:
            streams = json.load(fh)["streams"]
    except FileNotFoundError:
        return 0
    restored = 0
    for sender, pair, epoch, cpu, top in streams:
        key = bytes(abi.SEAL_STREAM.pack(sender=sender, pair=pair, epoch=epoch, cpu=cpu))
        if replay.lookup(key) is not None:
            continue  # a live window knows better than the record
        try:
            replay.update(key, bytes(abi.SEAL_WINDOW.pack(top=top, ring=ALL_SEEN)))
        except LibbpfError:
            break  # the table is full: what was restored stands, the rest fails closed as new streams
        restored += 1
    return restored
