"""Verifier findings and their renderings (text, JSON, SARIF, lint diagnostics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sealnet.compiler.codes import FINDING_CODES, UNDECIDED
from sealnet.compiler.diagnostics import Diagnostic, Note, Severity
from sealnet.compiler.ir import Packet, Span
from sealnet.compiler.solving import Status

# Stable diagnostic codes of the verifier's findings (compiler/codes.py).
CODES = FINDING_CODES
UNDECIDED_CODE = UNDECIDED


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


@dataclass(frozen=True)
class Outcome:
    """The answer to one property the verifier was asked about.

    kind: "assert sealed" | "assert never" | "assert reachable" | "flow" for
    the properties a policy states; "rule" (a rule's anomaly checks) and
    "least-privilege" (one domain pair) appear only when undecided.
    status: proved, refuted (then `witness` breaks it, re-checked by the
    reference semantics) or unknown (then `reason`: timeout, resource limit,
    total budget exhausted). Unknown is never a pass.
    """

    kind: str
    text: str
    span: Span
    status: Status
    witness: Packet | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text, "status": self.status.value,
                "file": self.span.file, "line": self.span.line, "column": self.span.column,
                "witness": self.witness.to_json() if self.witness else None, "reason": self.reason}

    def to_diagnostic(self) -> Diagnostic:
        """Only for unknown outcomes: the property could not be decided (an error: it fails)."""
        return Diagnostic(Severity.ERROR, UNDECIDED_CODE,
                          f"could not decide {self.kind} `{self.text}`: {self.reason}", self.span,
                          "raise --timeout or --budget, or split the policy")


def findings_to_diagnostics(findings: list[Finding]) -> list[Diagnostic]:
    return [f.to_diagnostic() for f in findings]
