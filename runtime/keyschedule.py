"""Epochs, pair secrets and who keeps them; sealing secrets at rest.

Epochs follow the clock: epoch = floor(unix time / period), so every control
plane of a federation numbers them alike without talking, and a restarted
control plane resumes at the right one. The state database remembers the
highest epoch it ever served and never goes below it (a clock stepped back
cannot make an epoch, and so a key, come back).

Each domain pair (A, B) has one keeper, the control plane that draws the
pair's secret for each epoch at random: the first of A and B (by name) that
has a control plane. The other side's control plane fetches the secret from
the keeper over MAKE (federation). Nodes of both domains derive their
per-direction keys from it (runtime/seal_wire.direction_key).

Secrets are stored sealed: AES-256-GCM under the control plane's sealing key
(in a TEE, a key only that TEE derives), with the pair and epoch as associated
data so a row cannot be moved to another pair or epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealnet.runtime.seal_wire import PAIR_KEY_LEN

DEFAULT_PERIOD = 3600
MAX_EPOCH = 2**32 - 1


class SealedStateError(RuntimeError):
    """A sealed row does not open: another sealing key, or tampered state."""


def pair_name(a: str, b: str) -> str:
    x, y = sorted((a, b))
    return f"{x}|{y}"


def pair_domains(name: str) -> tuple[str, str]:
    a, b = name.split("|")
    return a, b


def keeper(a: str, b: str, with_control_plane: set[str]) -> str | None:
    """The control plane that draws the pair's secrets (None: no side has one)."""
    for name in sorted((a, b)):
        if name in with_control_plane:
            return name
    return None


def epoch_at(now: float, period: int) -> int:
    return min(int(now // period), MAX_EPOCH - 1)


def new_pair_secret() -> bytes:
    return os.urandom(PAIR_KEY_LEN)


@dataclass(frozen=True)
class Sealer:
    """Seals state rows at rest; `what` (e.g. "epoch|a|b|17") is bound as associated data."""

    key: bytes

    def seal(self, what: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.key).encrypt(nonce, plaintext, b"sealnet-state-v1\0" + what.encode())

    def open(self, what: str, blob: bytes) -> bytes:
        try:
            return AESGCM(self.key).decrypt(blob[:12], blob[12:], b"sealnet-state-v1\0" + what.encode())
        except (InvalidTag, ValueError):
            raise SealedStateError(f"sealed state {what!r} does not open with this control plane's "
                                   f"sealing key (another key, or the database was tampered with)") from None
