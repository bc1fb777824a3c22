"""Code actions (fixes proved by diff) and code lenses (each property's status)."""

from __future__ import annotations

from lsprotocol import types

from sealnet.compiler import ast
from sealnet.compiler.ir import Span
from sealnet.compiler.lsp.convert import to_lsp, to_range
from sealnet.compiler.lsp.state import DocumentState, relocate
from sealnet.compiler.lsp.verification import PROVED, REFUTED

LENS_MARK = {PROVED: "✓ proved", REFUTED: "✗ refuted", "unknown": "? unknown"}


def code_actions(state: DocumentState, first_line: int, last_line: int) -> list[types.CodeAction]:
    """Fixes for findings on 0-based lines first..last, only when proved for this very text."""
    verified = state.fresh()
    if verified is None:
        return []
    uri = state.uri
    findings = {(f.code, f.span.line): f for f in verified.verdict.findings}
    out = []
    for fix in verified.fixes:
        if not first_line <= fix.finding_line - 1 <= last_line:
            continue
        edits = [types.TextEdit(range=types.Range(start=types.Position(line=e.start_line, character=e.start_character),
                                                  end=types.Position(line=e.end_line, character=e.end_character)),
                                new_text=e.text) for e in fix.edits]
        finding = findings.get((fix.code, fix.finding_line))
        out.append(types.CodeAction(
            title=fix.title, kind=types.CodeActionKind.QuickFix, is_preferred=fix.preferred,
            diagnostics=[to_lsp(finding.to_diagnostic(), uri)] if finding else None,
            edit=types.WorkspaceEdit(changes={uri: edits})))
    return out


def _properties(state: DocumentState) -> list[tuple[Span, str]]:
    """Every assertion and workflow flow of the current text: span and how it reads."""
    out = []
    for chunk in state.analysis.chunks:
        stmt = chunk.parsed[0]
        if isinstance(stmt, ast.AssertDecl):
            placed = chunk.statement
            out.append((placed.span, f"assert {placed.kind.name}"))  # type: ignore[union-attr]
        elif isinstance(stmt, ast.WorkflowDecl):
            for item in chunk.statement.items:  # type: ignore[union-attr]
                if isinstance(item, ast.FlowDecl):
                    out.append((item.span, "flow"))
    return out


def code_lenses(state: DocumentState) -> list[types.CodeLens]:
    verified = state.verified
    statuses = {}
    if verified is not None and not state.analysis.has_errors:
        for prop in verified.verdict.properties:
            where = relocate(prop.span, verified.analysis, state.analysis)
            if where is not None:
                statuses[(where.line, where.column)] = prop
    stale = state.fresh() is None
    lenses = []
    for span, what in _properties(state):
        prop = statuses.get((span.line, span.column))
        if prop is None:
            title = f"{what}: verifying…" if not state.analysis.has_errors else f"{what}: not verified (fix the errors)"
        else:
            title = f"{LENS_MARK.get(prop.status, prop.status)}"
            if prop.status == REFUTED and prop.witness:
                title += f": {prop.witness}"
            elif prop.status == "unknown" and prop.reason:
                title += f": {prop.reason}"
            if stale:
                title += " (re-verifying)"
        lenses.append(types.CodeLens(range=to_range(span),
                                     command=types.Command(title=title, command="")))
    return lenses
