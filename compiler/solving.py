"""Three answers, never two: every solver question is proved, refuted or unknown.

Z3 answers `unknown` when a query runs out of time or resources; reading that
as "no counterexample" would let the verifier say "proved" without a proof.
`Session.model` therefore returns a model (refuted: here is a packet), None
(proved: none exists), or raises `Undecided` with the reason; callers record
the property as unknown, and the commands fail on it (docs/diagnostics.md:
exit code 3).

Z3 installs its own SIGINT handler while it solves and turns Ctrl-C into a
cancelled query ("interrupted from keyboard"); `Session` raises
KeyboardInterrupt then, so Ctrl-C stops the run instead of being swallowed.
A program with its own SIGINT handler (policyc) keeps Z3's off instead.
"""

from __future__ import annotations

import enum
import signal
import time
from dataclasses import dataclass

import z3

from sealnet.compiler.limits import DEFAULT_CUBE_BUDGET, DEFAULT_QUERY_TIMEOUT_S, DEFAULT_TOTAL_BUDGET_S  # noqa: F401

# Z3's reason_unknown for a query cancelled by Ctrl-C. (A query cancelled by
# its own timeout says "timeout" or, racing with it, "canceled".)
_KEYBOARD = "interrupted from keyboard"


class Status(str, enum.Enum):
    """The answer to one property (an assertion, a flow, a rule's anomaly check)."""

    PROVED = "proved"  # holds for every packet
    REFUTED = "refuted"  # a witness packet breaks it (re-checked by the reference semantics)
    UNKNOWN = "unknown"  # not decided: timeout, resource limit or budget exhausted


class Undecided(Exception):
    """The solver could not answer one query; `reason` says why, in words."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Budget:
    """How long one query may run, and the whole run (seconds; None: no limit);
    how far the exact cube arithmetic may go before the solver is asked."""

    query_timeout: float | None = DEFAULT_QUERY_TIMEOUT_S
    total: float | None = DEFAULT_TOTAL_BUDGET_S
    cubes: int = DEFAULT_CUBE_BUDGET


def classify_unknown(reason: str) -> str:
    """Z3's reason_unknown as one of: timeout, resource limit, memory limit, or Z3's own words."""
    text = reason.lower()
    if "timeout" in text:
        return "timeout"
    if "memory" in text:
        return "memory limit"
    if "resource" in text or "rlimit" in text:
        return "resource limit"
    return reason or "unknown"


class Session:
    """One incremental solver with a per-query timeout and a total deadline."""

    def __init__(self, budget: Budget | None = None):
        self.budget = budget or Budget()
        if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            # The program handles SIGINT itself (policyc stops at once: compiler/cli.py);
            # Z3's own handler would take the signal during a query and could lose it.
            z3.set_param("ctrl_c", False)
        self.solver = z3.Solver()
        self.started = time.monotonic()
        self.deadline = None if self.budget.total is None else self.started + self.budget.total
        self.queries = 0

    def add(self, *constraints: z3.BoolRef) -> None:
        self.solver.add(*constraints)

    def push(self) -> None:
        self.solver.push()

    def pop(self) -> None:
        self.solver.pop()

    def _timeout_ms(self) -> int | None:
        limits = []
        if self.budget.query_timeout is not None:
            limits.append(self.budget.query_timeout)
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise Undecided("total budget exhausted")
            limits.append(left)
        return None if not limits else max(1, int(min(limits) * 1000))

    def check(self) -> z3.CheckSatResult:
        """sat or unsat; raises Undecided on unknown, KeyboardInterrupt on Ctrl-C."""
        timeout = self._timeout_ms()
        self.solver.set("timeout", timeout if timeout is not None else 4294967295)
        self.queries += 1
        started = time.monotonic()
        result = self.solver.check()
        if result == z3.unknown:
            reason = self.solver.reason_unknown().lower()
            # Z3 takes SIGINT itself during a query and sometimes reports it as
            # plain "canceled", as it does a timeout: a cancel well before the
            # query's time was up can only be the interrupt.
            early = timeout is None or (time.monotonic() - started) * 1000 < timeout * 0.9
            if _KEYBOARD in reason or ("cancel" in reason and early):
                raise KeyboardInterrupt
            if self.deadline is not None and time.monotonic() >= self.deadline:
                raise Undecided("total budget exhausted")
            raise Undecided("timeout" if "cancel" in reason else classify_unknown(reason))
        return result

    def model(self, *constraints: z3.BoolRef) -> z3.ModelRef | None:
        """A model of the constraints (with those already added), None when there is none."""
        self.solver.push()
        try:
            self.solver.add(*constraints)
            if self.check() == z3.sat:
                return self.solver.model()
            return None
        finally:
            self.solver.pop()
