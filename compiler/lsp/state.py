"""What the server knows about one open document, and how results follow the text.

Background results describe the version they were computed for. Until the
next one arrives, each of their locations is carried to the current text
through the statement it lies in: a rule by its name, any other statement by
its text, moved by as many lines as that statement moved.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from lsprotocol import types

from sealnet.compiler import ast
from sealnet.compiler.diagnostics import Diagnostic
from sealnet.compiler.ir import Policy, Span
from sealnet.compiler.lsp.convert import to_lsp
from sealnet.compiler.lsp.document import Analysis, Chunk, FrontEnd, shift
from sealnet.compiler.lsp.fixes import Fix
from sealnet.compiler.lsp.verification import Verdict
from sealnet.compiler.regions import RuleIndex


def _chunk_key(chunk: Chunk) -> tuple[str, str]:
    stmt = chunk.parsed[0]
    if isinstance(stmt, (ast.RuleDecl, ast.DomainDecl, ast.WorkflowDecl)):
        return (type(stmt).__name__, stmt.name.name)
    return ("text", chunk.text.strip())


def _keyed(analysis: Analysis) -> dict[tuple[str, str], Chunk]:
    found = analysis.memo.get("keyed")
    if found is None:
        found = {}
        for chunk in analysis.chunks:
            found.setdefault(_chunk_key(chunk), chunk)
        analysis.memo["keyed"] = found
    return found


def relocate(span: Span, old: Analysis, new: Analysis) -> Span | None:
    """Where a location in `old` is in `new`, or None if its statement is gone."""
    if old is new:
        return span
    chunk = old.chunk_at_line(span.line)
    if chunk is None:
        return None
    moved = _keyed(new).get(_chunk_key(chunk))
    if moved is None:
        return None
    return shift(span, moved.offset - chunk.offset)


def _unmoved(diag: Diagnostic, old: Analysis, new: Analysis) -> bool:
    return all(relocate(span, old, new) == span for span in (diag.span, *(n.span for n in diag.notes)))


def relocate_diagnostic(diag: Diagnostic, old: Analysis, new: Analysis) -> Diagnostic | None:
    span = relocate(diag.span, old, new)
    if span is None:
        return None
    notes = []
    for note in diag.notes:
        where = relocate(note.span, old, new)
        if where is not None:
            notes.append(dataclasses.replace(note, span=where))
    return dataclasses.replace(diag, span=span, notes=tuple(notes))


@dataclass
class Verified:
    """The verifier's answer for one version of the document."""

    analysis: Analysis
    verdict: Verdict
    policy: Policy
    fixes: list[Fix] = field(default_factory=list)
    _index: RuleIndex | None = None
    _converted: list[tuple[Diagnostic, types.Diagnostic]] | None = None

    def converted(self, uri: str) -> list[tuple[Diagnostic, types.Diagnostic]]:
        """The findings and undecided properties, with their LSP form (built once)."""
        if self._converted is None:
            ours = [f.to_diagnostic() for f in self.verdict.findings] + list(self.verdict.undecided)
            self._converted = [(d, to_lsp(d, uri)) for d in ours if d.span.file == uri]
        return self._converted

    @property
    def index(self) -> RuleIndex:
        if self._index is None:
            self._index = RuleIndex.build(self.policy)
        return self._index


@dataclass
class DocumentState:
    uri: str
    front_end: FrontEnd
    analysis: Analysis
    checked: tuple[Analysis, list[Diagnostic], bool] | None = None  # a full check: version, diagnostics, errors
    verified: Verified | None = None
    pending: Any = None  # the background job in flight for this document

    @property
    def version(self) -> int | None:
        return self.analysis.version

    def lsp_diagnostics(self) -> list[types.Diagnostic]:
        """Syntax and checker diagnostics of the current text, then the verifier's findings (as LSP)."""
        current = self.analysis
        full_check = self.checked is not None and self.checked[0] is current and not current.syntax
        checker = list(self.checked[1]) if full_check else current.diagnostics  # type: ignore[index]
        out = [to_lsp(d, self.uri) for d in checker if d.span.file == self.uri]
        if self.verified is None or current.has_errors or (full_check and self.checked[2]):  # type: ignore[index]
            return out
        old = self.verified.analysis
        for ours, converted in self.verified.converted(self.uri):
            if old is current or _unmoved(ours, old, current):
                out.append(converted)  # converted once per result: most findings do not move on an edit
            else:
                moved = relocate_diagnostic(ours, old, current)
                if moved is not None:
                    out.append(to_lsp(moved, self.uri))
        return out

    def fresh(self) -> Verified | None:
        """The verifier's answer if it is for exactly the current text."""
        v = self.verified
        return v if v is not None and v.analysis.text == self.analysis.text else None
