"""Positions between our spans and LSP ranges, and diagnostics to LSP.

LSP counts lines and characters from 0; our spans count from 1 and end
exclusive. Policies are ASCII in practice, so code points stand in for
UTF-16 units.
"""

from __future__ import annotations

from lsprotocol import types

from sealnet.compiler.diagnostics import Diagnostic, Severity
from sealnet.compiler.ir import Span

SOURCE = "policyc"
_SEVERITY = {
    Severity.ERROR: types.DiagnosticSeverity.Error,
    Severity.WARNING: types.DiagnosticSeverity.Warning,
    Severity.INFO: types.DiagnosticSeverity.Information,
}


def to_range(span: Span) -> types.Range:
    end_character = span.end_column - 1
    if span.end_line == span.line:
        end_character = max(end_character, span.column)  # never an empty range on one line
    return types.Range(start=types.Position(line=span.line - 1, character=span.column - 1),
                       end=types.Position(line=span.end_line - 1, character=end_character))


def contains(span: Span, line: int, character: int) -> bool:
    """Does the span cover this 0-based LSP position (its end included, as editors expect)?"""
    line, column = line + 1, character + 1
    if (line, column) < (span.line, span.column):
        return False
    return (line, column) <= (span.end_line, span.end_column)


def to_lsp(diag: Diagnostic, uri: str, code_description: str | None = None) -> types.Diagnostic:
    message = diag.message if not diag.hint else f"{diag.message}\nhint: {diag.hint}"
    return types.Diagnostic(
        range=to_range(diag.span),
        message=message,
        severity=_SEVERITY[diag.severity],
        code=diag.code,
        source=SOURCE,
        related_information=[
            types.DiagnosticRelatedInformation(
                location=types.Location(uri=uri if note.span.file == diag.span.file else note.span.file,
                                        range=to_range(note.span)),
                message=note.message)
            for note in diag.notes
        ] or None,
    )
