"""Sequence generations: the durable half of "no (key, nonce) pair ever repeats".

The nonce is sender || cpu || sequence (docs/wire-format.md, "Nonce
uniqueness"). A sequence number is `generation << GENERATION_SHIFT | count`:
each program load seals in a generation of its own, reserved here before the
load may seal anything, and the data plane never lets `count` leave its
generation. A reservation is

- strictly greater than every generation this node ever reserved for the
  sender (the ledger, under an exclusive lock, written and fsync'd with its
  directory before the generation is used), and
- at least the number of minutes from 2026-01-01 UTC to the moment it was
  made, so a node whose ledger is lost (a reinstalled disk) or a new node
  that inherits a retired node's address still starts beyond what the old
  one used, as long as its clock is not behind the old one's last
  reservation (a node that reloads more than once a minute runs ahead of
  the clock by that many minutes; the ledger still orders its own loads).

A sequence is 56 bits at most (the ChaCha20-Poly1305 nonce carries the low
7 bytes): 24 bits of generation (2^24 minutes is 31 years of reservations)
and 32 bits of count per CPU per generation.

The ledger lives in the durable directory (/var/lib/sealnet), not with the
runtime state on tmpfs (/run/sealnet): a reboot wipes the latter and reuses
program ids, which is why the old ledger, keyed by program id, failed.
"""

from __future__ import annotations

import json
import os
import time

from sealnet.contracts import abi
from sealnet.runtime.node_files import locked, write_durably

GENERATION_SHIFT = abi.SEAL_SEQ_COUNT_BITS
GENERATION_LIMIT = 1 << (56 - GENERATION_SHIFT)  # sequence bits 32..55: every suite's nonce carries them
CLOCK_ORIGIN = 1767225600  # 2026-01-01T00:00:00Z: generations count minutes from here
COUNT_END = abi.SEAL_SEQ_COUNT_END  # the data plane seals no count at or past this
COUNT_RENEW_AT = 1 << (GENERATION_SHIFT - 1)  # the agent moves a load to a new generation here
LEDGER_NAME = "sequence-generations.json"
LOCK_NAME = "sequence-generations.lock"


class LedgerError(RuntimeError):
    """The ledger could not promise a fresh generation: nothing may be sealed."""


def _read(path: str) -> dict[str, int]:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        # A damaged ledger cannot prove anything: refuse rather than restart at 1.
        raise LedgerError(f"{path}: unreadable ({exc}); move it aside only if no key it covered is still in use") from None
    if not isinstance(data, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in data.values()):
        raise LedgerError(f"{path}: not a sealnet sequence ledger")
    return {str(k): int(v) for k, v in data.items()}


def reserve_generation(ledger_dir: str, sender: int, now: float | None = None) -> int:
    """A generation for `sender` that no earlier load on this node used; durable before it returns."""
    path = os.path.join(ledger_dir, LEDGER_NAME)
    with locked(os.path.join(ledger_dir, LOCK_NAME)):
        ledger = _read(path)
        last = ledger.get(str(sender), 0)
        minutes = (int(time.time() if now is None else now) - CLOCK_ORIGIN) // 60
        generation = max(last + 1, minutes)
        if generation >= GENERATION_LIMIT:
            raise LedgerError(f"sender {sender} has used every sequence generation: give this node new keys")
        ledger[str(sender)] = generation
        write_durably(path, json.dumps(ledger, indent=1, sort_keys=True).encode())
    return generation


def last_generation(ledger_dir: str, sender: int) -> int:
    return _read(os.path.join(ledger_dir, LEDGER_NAME)).get(str(sender), 0)


def sequence_base(generation: int) -> int:
    """The counter value a load starts at: its first sequence number is one more."""
    return generation << GENERATION_SHIFT
