"""The running data plane's counters, each traced to the rule and policy line behind it.

`rule_hits` counts per (direction, rule), the default rule last;
`verdict_hits` per (direction, verdict); `rule_verdict_hits` per (direction,
rule, verdict), so a drop reason is traced to the rule and line behind it;
`seal_replay_evictions` (a sealing load's) the streams evicted from the
replay stream table (docs/wire-format.md, "The stream table").
All are read from the pins of the running load, so `status`, `metrics` and
the agent see the same numbers. Per-rule verdicts are read only for rules
that saw packets: a 10,000-rule policy's status stays fast.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sealnet.contracts.abi import (RULE_HITS_MAP, RULE_VERDICT_HITS_MAP, SEAL_REPLAY_EVICTIONS_MAP, VERDICT_HITS_MAP,
                                   Direction, Verdict, counters_by_verdict, rule_slot, rule_verdict_slot)
from sealnet.contracts.libbpf import LibbpfError, Map, get_pinned
from sealnet.runtime.node_state import NodeState


class CountersError(Exception):
    """The pinned counters cannot be read; the message says which pin and why."""


@dataclass(frozen=True)
class RuleCount:
    index: int
    name: str
    action: str
    line: int
    direction: str
    packets: int
    verdicts: dict[str, int]  # this rule's packets by verdict (only the verdicts that occurred)


def _open(state: NodeState, name: str) -> Map:
    path = os.path.join(state.pin_dir, name)
    try:
        return Map.from_fd(get_pinned(path), owns_fd=True)
    except LibbpfError as exc:
        if exc.errno == 1 or exc.errno == 13:
            raise CountersError(f"{path}: permission denied (reading the data plane needs root or CAP_BPF)") from None
        raise CountersError(f"{path}: the running load's pin is missing ({exc.message}); "
                            f"load the bundle again to repair it") from None


def _values(m: Map) -> list[int]:
    return [m.sum_percpu_u64(i.to_bytes(4, "little")) for i in range(m.max_entries)]


def verdict_counts(state: NodeState) -> dict[str, dict[str, int]]:
    with _open(state, VERDICT_HITS_MAP) as m:
        values = _values(m)
    return counters_by_verdict(values)


def rule_counts(state: NodeState) -> list[RuleCount]:
    with _open(state, RULE_HITS_MAP) as m:
        values = _values(m)
    n_rules = len(values) // len(Direction) - 1  # rule_hits holds rule_slot_count(n_rules) slots
    known = {int(r["index"]): r for r in state.rules}
    out = []
    with _open(state, RULE_VERDICT_HITS_MAP) as per_verdict:
        for d in Direction:
            for index in range(n_rules + 1):
                info = known.get(index, {})
                default = index == n_rules
                packets = values[rule_slot(d, index, n_rules)]
                verdicts: dict[str, int] = {}
                if packets:
                    for v in Verdict:
                        n = per_verdict.sum_percpu_u64(rule_verdict_slot(d, index, v, n_rules).to_bytes(4, "little"))
                        if n:
                            verdicts[v.label] = n
                out.append(RuleCount(index, str(info.get("name", "default" if default else f"rule {index}")),
                                     str(info.get("action", "")), int(info.get("line", 0)), d.label, packets,
                                     verdicts))
    return out


def replay_evictions(state: NodeState) -> int | None:
    """Streams evicted from the replay stream table since the load (None: no sealing path, or a
    load from before the counter existed)."""
    if not state.sealing or not os.path.exists(os.path.join(state.pin_dir, SEAL_REPLAY_EVICTIONS_MAP)):
        return None
    with _open(state, SEAL_REPLAY_EVICTIONS_MAP) as m:
        return m.sum_percpu_u64(bytes(4))


def snapshot(state: NodeState) -> dict[str, Any]:
    """Everything `status --format json` shows about counters."""
    out: dict[str, Any] = {
        "verdict_hits": verdict_counts(state),
        "rules": [{"index": r.index, "name": r.name, "action": r.action, "line": r.line,
                   "direction": r.direction, "packets": r.packets, "verdicts": r.verdicts}
                  for r in rule_counts(state)],
    }
    evictions = replay_evictions(state)
    if evictions is not None:
        out["replay_evictions"] = evictions
    return out
