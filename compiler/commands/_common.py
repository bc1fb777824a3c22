"""What several policyc commands share: reading policies and printing diagnostics."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from sealnet.compiler.diagnostics import Diagnostic
from sealnet.contracts.errors import UserError
from sealnet.compiler.frontend import compile_text, has_errors, read_policy  # noqa: F401  (has_errors: for the commands)
from sealnet.compiler.ir import Policy
from sealnet.compiler.output import use_color
from sealnet.compiler.render import render_all, summary

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
    try:
        source = read_policy(path)
    except UserError as exc:
        return Loaded(path, None, None, error=str(exc))
    policy, diagnostics = compile_text(source, path)
    return Loaded(path, source, policy, diagnostics)


def print_diagnostics(loaded: list[Loaded], fmt: str) -> None:
    """Print every file's diagnostics (and unreadable files) in one format."""
    diagnostics = [d for item in loaded for d in item.diagnostics]
    for item in loaded:
        if item.error:
            print(f"policyc: error: {item.error}", file=sys.stderr)
    if fmt == "json":
        print(json.dumps({"diagnostics": [d.to_json() for d in diagnostics]}, indent=2))
    elif fmt == "sarif":
        from sealnet.compiler.sarif import to_sarif

        print(json.dumps(to_sarif(diagnostics), indent=2))
    else:
        sources = {item.path: item.source for item in loaded}
        color = use_color(sys.stdout)
        if diagnostics:
            print(render_all(diagnostics, sources.get, color))
            print()
        readable = sum(1 for item in loaded if not item.error)
        print(f"{readable} file{'s' if readable != 1 else ''} checked: {summary(diagnostics)}")
