"""What several policyc commands share: reading policies and printing diagnostics."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from ..diagnostics import Diagnostic, Severity, UserError
from ..frontend import MAX_POLICY_BYTES
from ..ir import Policy
from ..output import read_source, use_color
from ..render import render_all, summary

FORMATS = ("text", "json", "sarif")


@dataclass
class Loaded:
    """One policy file: its text (None when unreadable), IR and diagnostics."""

    path: str
    source: str | None
    policy: Policy | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: str | None = None  # a one-line reason the file could not be read


def load(path: str) -> Loaded:
    from ..frontend import compile_text
    import os

    try:
        if os.path.isfile(path) and os.path.getsize(path) > MAX_POLICY_BYTES:
            raise UserError(f"{path}: larger than the {MAX_POLICY_BYTES >> 20} MiB a policy may be")
        source = read_source(path)
    except UserError as exc:
        return Loaded(path, None, None, error=str(exc))
    policy, diagnostics = compile_text(source, path)
    return Loaded(path, source, policy, diagnostics)


def has_errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def print_diagnostics(loaded: list[Loaded], fmt: str) -> None:
    """Print every file's diagnostics (and unreadable files) in one format."""
    diagnostics = [d for item in loaded for d in item.diagnostics]
    for item in loaded:
        if item.error:
            print(f"policyc: error: {item.error}", file=sys.stderr)
    if fmt == "json":
        print(json.dumps({"diagnostics": [d.to_json() for d in diagnostics]}, indent=2))
    elif fmt == "sarif":
        from ..sarif import to_sarif

        print(json.dumps(to_sarif(diagnostics), indent=2))
    else:
        sources = {item.path: item.source for item in loaded}
        color = use_color(sys.stdout)
        if diagnostics:
            print(render_all(diagnostics, sources.get, color))
            print()
        readable = sum(1 for item in loaded if not item.error)
        print(f"{readable} file{'s' if readable != 1 else ''} checked: {summary(diagnostics)}")
