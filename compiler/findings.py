"""Verifier findings and their renderings (text, JSON, SARIF, lint diagnostics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealnet.compiler.diagnostics import Diagnostic, Note, Severity
from sealnet.compiler.ir import Packet, Span

# Stable diagnostic codes of the verifier's findings (docs/diagnostics.md).
CODES = {
    "shadowed": "V301",
    "redundant": "V302",
    "correlated": "V303",
    "generalization": "V304",
    "unreachable": "V305",
    "assertion-failed": "V310",
    "workflow-blocked": "V311",
    "over-permissive": "V312",
    "decision-changed": "V320",
}


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: Severity
    rules: tuple[str, ...]
    message: str
    span: Span
    witness: Packet | None = None
    notes: tuple[Note, ...] = field(default=())

    @property
    def code(self) -> str:
        return CODES[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "severity": self.severity.value,
            "rules": list(self.rules),
            "message": self.message,
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "witness": self.witness.to_json() if self.witness else None,
        }

    def to_diagnostic(self) -> Diagnostic:
        hint = f"for example {self.witness}" if self.witness else None
        return Diagnostic(self.severity, self.code, self.message, self.span, hint, self.notes)


@dataclass(frozen=True)
class Proved:
    kind: str  # "assert sealed" / "assert never" / "assert reachable" / "flow"
    text: str
    span: Span

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "file": self.span.file,
                "line": self.span.line, "column": self.span.column}


def findings_to_diagnostics(findings: list[Finding]) -> list[Diagnostic]:
    return [f.to_diagnostic() for f in findings]
