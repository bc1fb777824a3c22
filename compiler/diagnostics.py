"""Diagnostics: what every stage reports to a person or a tool.

Codes are stable (documented in docs/diagnostics.md); messages may improve.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sealnet.compiler.ir import Span


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Note:
    """A secondary location that explains the main one (e.g. the earlier rule)."""

    span: Span
    message: str


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    code: str
    message: str
    span: Span
    hint: str | None = None
    notes: tuple[Note, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.span.file,
            "line": self.span.line,
            "column": self.span.column,
            "end_line": self.span.end_line,
            "end_column": self.span.end_column,
            "severity": self.severity.value,
            "code": self.code,
            "message": self.message,
        }


class PolicyError(Exception):
    """A policy that cannot go on to the next stage; carries its diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("; ".join(f"{d.span}: {d.message}" for d in diagnostics[:3]))
