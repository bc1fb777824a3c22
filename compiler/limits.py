"""Default limits of the verifier, importable without Z3 (the command lines' help shows them)."""

from __future__ import annotations

# Defaults of `policyc verify/lint/compile --timeout/--budget`.
DEFAULT_QUERY_TIMEOUT_S = 10.0
DEFAULT_TOTAL_BUDGET_S = 600.0
# Cubes the exact arithmetic (firstmatch.py) may fragment a region into
# before Z3 takes over; 0 sends every question that needs a subtraction to Z3.
DEFAULT_CUBE_BUDGET = 2048
