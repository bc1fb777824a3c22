"""Text -> checked IR: the front half of the pipeline, as one call."""

from __future__ import annotations

from .checker import check
from .diagnostics import Diagnostic, Severity
from .ir import Policy
from .output import read_source
from .parser import parse

# Larger inputs are refused before parsing: no policy is this big, and a
# multi-gigabyte file would only exhaust memory.
MAX_POLICY_BYTES = 64 * 1024 * 1024


def compile_text(text: str, file: str = "<input>") -> tuple[Policy | None, list[Diagnostic]]:
    """Parse and check policy text; the Policy is None iff there is an error."""
    tree, diagnostics = parse(text, file)
    if tree is None:
        return None, diagnostics
    policy, checked = check(tree)
    return policy, diagnostics + checked


def load_policy(path: str) -> tuple[Policy | None, list[Diagnostic]]:
    """Read and compile a policy file; unreadable files raise UserError."""
    from .diagnostics import UserError
    import os

    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    if size > MAX_POLICY_BYTES:
        raise UserError(f"{path}: {size} bytes is larger than the {MAX_POLICY_BYTES // (1024 * 1024)} MiB a policy may be")
    return compile_text(read_source(path), path)


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)
