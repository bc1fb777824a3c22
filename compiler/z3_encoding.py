"""The checked IR in Z3: one module, one job.

A packet is five bit-vectors (src, dst: 32; proto: 8; sport, dport: 16).
A Match becomes a disjunction of cubes, each a conjunction of per-field
interval constraints; the decision of an ordered rule list is the
first-match chain ending in the default, as an 8-bit action code. Protocols
without ports carry ports 0 (the well-formedness constraint), exactly as the
reference semantics and the data plane model them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import z3

from sealnet.compiler.ir import ADDR_BITS, PORTED_PROTOCOLS, Action, Cube, IntervalSet, Match, Packet, Rule

ACTION_CODES = {Action.DENY: 0, Action.ALLOW: 1, Action.SEAL: 2}
CODE_ACTIONS = {v: k for k, v in ACTION_CODES.items()}
NO_RULE = -1


@dataclass(frozen=True)
class PacketVars:
    src: z3.BitVecRef
    dst: z3.BitVecRef
    proto: z3.BitVecRef
    sport: z3.BitVecRef
    dport: z3.BitVecRef

    @classmethod
    def fresh(cls, prefix: str = "") -> "PacketVars":
        return cls(
            z3.BitVec(f"{prefix}src", ADDR_BITS), z3.BitVec(f"{prefix}dst", ADDR_BITS),
            z3.BitVec(f"{prefix}proto", 8), z3.BitVec(f"{prefix}sport", 16), z3.BitVec(f"{prefix}dport", 16),
        )

    def well_formed(self) -> z3.BoolRef:
        ported = z3.Or(*[self.proto == p for p in PORTED_PROTOCOLS])
        return z3.Or(ported, z3.And(self.sport == 0, self.dport == 0))

    def packet(self, model: z3.ModelRef) -> Packet:
        value = lambda v: model.eval(v, model_completion=True).as_long()  # noqa: E731
        return Packet(value(self.src), value(self.dst), value(self.proto), value(self.sport), value(self.dport))


def in_intervals(var: z3.BitVecRef, intervals: IntervalSet) -> z3.BoolRef:
    width = var.size()
    full = (1 << width) - 1
    if intervals == ((0, full),):
        return z3.BoolVal(True)
    parts = []
    for lo, hi in intervals:
        if lo == hi:
            parts.append(var == lo)
        elif lo == 0:
            parts.append(z3.ULE(var, hi))
        elif hi == full:
            parts.append(z3.UGE(var, lo))
        else:
            parts.append(z3.And(z3.UGE(var, lo), z3.ULE(var, hi)))
    return z3.Or(*parts) if parts else z3.BoolVal(False)


def cube_pred(p: PacketVars, cube: Cube) -> z3.BoolRef:
    return z3.And(in_intervals(p.src, cube.src), in_intervals(p.dst, cube.dst),
                  in_intervals(p.proto, cube.proto), in_intervals(p.dport, cube.dport))


def match_pred(p: PacketVars, match: Match) -> z3.BoolRef:
    if not match.cubes:
        return z3.BoolVal(False)
    return z3.Or(*[cube_pred(p, c) for c in match.cubes])


class Chain:
    """The first-match decision of `rules` (in order) with `default`, over packet `p`.

    `action` is the 8-bit action code; `rule` is the deciding rule's index
    (NO_RULE for the default), built only when asked for. Only the rules
    given take part: callers pass the rules that can share a packet with the
    region they ask about.
    """

    def __init__(self, p: PacketVars, rules: Sequence[Rule], default: Action,
                 pred_of: Callable[[Rule], z3.BoolRef] | None = None):
        self.p = p
        self.rules = list(rules)
        self.preds = [pred_of(r) if pred_of else match_pred(p, r.match) for r in self.rules]
        codes = _action_constants()
        action: z3.BitVecRef = codes[default]
        for r, pred in zip(reversed(self.rules), reversed(self.preds)):
            if codes[r.action] is not action:  # equal neighbours fold away
                action = z3.If(pred, codes[r.action], action)
        self.action = action
        self._rule: z3.ArithRef | None = None

    @property
    def rule(self) -> z3.ArithRef:
        if self._rule is None:
            rule: z3.ArithRef = z3.IntVal(NO_RULE)
            for r, pred in zip(reversed(self.rules), reversed(self.preds)):
                rule = z3.If(pred, z3.IntVal(r.index), rule)
            self._rule = rule
        return self._rule

    def none_match(self) -> z3.BoolRef:
        return z3.Not(z3.Or(*self.preds)) if self.preds else z3.BoolVal(True)


_CONSTANTS: dict[Action, z3.BitVecRef] = {}


def _action_constants() -> dict[Action, z3.BitVecRef]:
    if not _CONSTANTS:
        _CONSTANTS.update({a: z3.BitVecVal(code, 8) for a, code in ACTION_CODES.items()})
    return _CONSTANTS


def action_of(model: z3.ModelRef, expr: z3.BitVecRef) -> Action:
    return CODE_ACTIONS[model.eval(expr, model_completion=True).as_long()]
