"""What the node agent remembers: per-interface state (runtime) and the rollback record (durable).

Two directories, on purpose:
- the runtime state dir (/run/sealnet, tmpfs) describes what is attached
  now; a reboot wipes it together with what it describes;
- the durable dir (/var/lib/sealnet) holds promises that must outlive a
  reboot: the highest policy version each signer's policy ever ran here
  (rollback protection) and the sequence generations (runtime/nonce_ledger.py).

The state file doubles as the journal of a load or unload in progress
(`phase`): a command killed half way leaves a record saying what it was
doing, and the next command finishes it (runtime/node.py, `recover`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

from sealnet.runtime.node_files import locked, write_durably

RUNNING, LOADING, UNLOADING = "running", "loading", "unloading"
VERSIONS_NAME = "policy-versions.json"


class StateError(Exception):
    """A state file that cannot be read; the message names it."""


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
    phase: str = RUNNING
    previous_pin_dir: str | None = None  # while loading: the load being replaced
    clsact_created: bool = False  # we created the clsact qdisc, so unload removes it
    policy_name: str = ""
    policy_version: int = 0
    signer: str = ""
    rules: list[dict[str, Any]] = field(default_factory=list)  # index, name, action, line
    sealed_rules: int = 0
    epochs: dict[str, int] = field(default_factory=dict)  # "src->dst" -> epoch egress seals with
    # The bypass guard (runtime/node_guard.py): "lsm" attached, "accepted-risk" (--allow-qdisc-bypass
    # where it cannot run), "none" (nothing sealed); "" in a state written before the guard existed.
    qdisc_bypass_guard: str = ""

    def to_json(self) -> dict[str, Any]:
        # Shallow: the fields are already JSON values, and a 10,000-rule policy's `rules`
        # would make a deep copy (dataclasses.asdict) the slowest step of a load.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeState:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def slug(iface: str, netns: str | None) -> str:
    return f"{netns or 'host'}--{iface}"


def state_path(state_dir: str, iface: str, netns: str | None) -> str:
    return os.path.join(state_dir, slug(iface, netns) + ".json")


def lock_path(state_dir: str, iface: str, netns: str | None) -> str:
    return os.path.join(state_dir, slug(iface, netns) + ".lock")


def read_state(state_dir: str, iface: str, netns: str | None) -> NodeState | None:
    path = state_path(state_dir, iface, netns)
    try:
        with open(path) as fh:
            return NodeState.from_json(json.load(fh))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise StateError(f"{path}: permission denied (the node agent's state is root's)") from None
    except (OSError, ValueError, TypeError) as exc:
        raise StateError(f"{path}: unreadable node state: {exc}") from None


def write_state(state_dir: str, state: NodeState) -> None:
    write_durably(state_path(state_dir, state.iface, state.netns),
                  json.dumps(state.to_json(), separators=(",", ":")).encode())


def remove_state(state_dir: str, iface: str, netns: str | None) -> None:
    try:
        os.unlink(state_path(state_dir, iface, netns))
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------- rollback


def _versions_path(durable_dir: str) -> str:
    return os.path.join(durable_dir, VERSIONS_NAME)


def _read_versions(durable_dir: str) -> dict[str, int]:
    try:
        with open(_versions_path(durable_dir)) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateError(f"{_versions_path(durable_dir)}: unreadable rollback record: {exc}") from None
    return {str(k): int(v) for k, v in data.items()}


def _policy_key(signer: str, policy: str) -> str:
    return f"{signer}/{policy}"


def highest_version(durable_dir: str, signer: str, policy: str) -> int | None:
    """The highest version of (signer, policy) this node has run, None if never."""
    return _read_versions(durable_dir).get(_policy_key(signer, policy))


def record_version(durable_dir: str, signer: str, policy: str, version: int) -> None:
    """Remember that (signer, policy) ran at `version` (the record only goes up)."""
    with locked(os.path.join(durable_dir, VERSIONS_NAME + ".lock")):
        versions = _read_versions(durable_dir)
        key = _policy_key(signer, policy)
        if versions.get(key, -1) >= version:
            return
        versions[key] = version
        write_durably(_versions_path(durable_dir), json.dumps(versions, indent=1, sort_keys=True).encode())
