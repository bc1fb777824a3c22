"""Text -> checked IR: the front half of the pipeline, as one call."""

from __future__ import annotations

import gc
import os
from contextlib import contextmanager
from typing import Iterator

from sealnet.compiler.checker import check
from sealnet.compiler.diagnostics import Diagnostic, Severity
from sealnet.compiler.ir import Policy
from sealnet.compiler.output import read_source
from sealnet.compiler.parser import parse
from sealnet.contracts.errors import UserError

# Larger inputs are refused before parsing: no policy is this big, and a
# multi-gigabyte file would only exhaust memory.
MAX_POLICY_BYTES = 64 * 1024 * 1024


def compile_text(text: str, file: str = "<input>") -> tuple[Policy | None, list[Diagnostic]]:
    """Parse and check policy text; the Policy is None iff there is an error."""
    with _collector_paused():
        tree, diagnostics = parse(text, file)
        if tree is None:
            return None, diagnostics
        policy, checked = check(tree)
    return policy, diagnostics + checked


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the AST and IR are built.

    They are hundreds of thousands of small acyclic objects, all kept: every
    collection the allocations trigger walks them again for nothing (it cost
    as much as the parse itself at 10,000 rules). Nothing cyclic is made here.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                # Hand what was built to the oldest generation, as if it had survived: else the first
                # young collection walks all of it at once. (Not when something else froze objects:
                # unfreeze would undo that.)
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def read_policy(path: str) -> str:
    """A policy file's text; an unreadable or oversized file raises UserError."""
    try:
        size = os.path.getsize(path) if os.path.isfile(path) else 0
    except OSError:
        size = 0
    if size > MAX_POLICY_BYTES:
        raise UserError(f"{path}: {size} bytes is larger than the {MAX_POLICY_BYTES >> 20} MiB a policy may be")
    return read_source(path)


def load_policy(path: str) -> tuple[Policy | None, list[Diagnostic]]:
    """Read and compile a policy file; unreadable files raise UserError."""
    return compile_text(read_policy(path), path)


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)
