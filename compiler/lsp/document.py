"""The incremental front end: a document's syntax tree and checker diagnostics within milliseconds of an edit.

A file is cut into statement-sized chunks (parser.statement_chunks); each
chunk's parse is cached by its text, so an edit re-parses the one chunk it
touched and moves the spans of the others by whole lines.

Checker diagnostics are cached the same way. The declarations (header,
domains, workflows, default) are checked together; a rule or assertion is
checked alone against them, so an edit to one rule re-checks that rule only.
The checks that relate one rule to another (a name defined twice, a rule that
repeats another) need every rule: those come from the full check that runs in
the background (worker.py) and are carried from its last result meanwhile.
"""

from __future__ import annotations

import bisect
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

from sealnet.compiler import ast
from sealnet.compiler.checker import DUPLICATE_NAME, DUPLICATE_RULE, check
from sealnet.compiler.diagnostics import Diagnostic, Severity
from sealnet.compiler.ir import Span
from sealnet.compiler.parser import parse_statement, statement_chunks

# Codes that relate two rules or assertions: only a check of every rule can give them.
CROSS_STATEMENT_CODES = frozenset({DUPLICATE_NAME, DUPLICATE_RULE})
BODY = (ast.RuleDecl, ast.AssertDecl)


# -- moving spans by whole lines ---------------------------------------------------------
def shift(value: Any, lines: int) -> Any:
    """A copy of a span-carrying value (AST node, diagnostic, span) `lines` lines further down."""
    if lines == 0 or value is None:
        return value
    return _shift(value, lines)


def _shift(value: Any, lines: int) -> Any:
    kind = type(value)
    if kind is Span:
        return Span(value.file, value.line + lines, value.column, value.end_line + lines, value.end_column)
    if kind is tuple:
        return tuple(_shift(v, lines) for v in value)
    if not dataclasses.is_dataclass(kind):
        return value
    # Frozen dataclasses: copy the instance dictionary rather than calling
    # dataclasses.replace (five times slower, and this runs on every statement
    # below an inserted line).
    copy = object.__new__(kind)
    fields = copy.__dict__
    for name, v in value.__dict__.items():
        fields[name] = v if type(v) in _PLAIN else _shift(v, lines)
    return copy


_PLAIN = frozenset({str, int, bool, type(None)})


# -- chunks ----------------------------------------------------------------------------------
class Chunk:
    """One statement-sized piece of the text; its statement is placed (moved to its line) on first use."""

    __slots__ = ("offset", "text", "parsed", "_placed")

    def __init__(self, offset: int, text: str, parsed: tuple[ast.Statement | None, Diagnostic | None]):
        self.offset = offset  # lines before the chunk
        self.text = text
        self.parsed = parsed  # statement and syntax error as if the chunk started the file
        self._placed: tuple[ast.Statement | None, Diagnostic | None] | None = None

    @property
    def kind(self) -> type | None:
        return type(self.parsed[0]) if self.parsed[0] is not None else None

    @property
    def is_body(self) -> bool:
        return isinstance(self.parsed[0], BODY)

    def _place(self) -> tuple[ast.Statement | None, Diagnostic | None]:
        if self._placed is None:
            self._placed = (shift(self.parsed[0], self.offset), shift(self.parsed[1], self.offset))
        return self._placed

    @property
    def statement(self) -> ast.Statement | None:
        return self._place()[0]

    @property
    def error(self) -> Diagnostic | None:
        return self._place()[1]

    @property
    def first_line(self) -> int:
        return self.offset + 1

    @property
    def last_line(self) -> int:
        return self.offset + max(1, self.text.count("\n") + (0 if self.text.endswith("\n") else 1))


class Analysis:
    """One version of a document as the fast front end sees it."""

    def __init__(self, uri: str, version: int | None, text: str, chunks: list[Chunk], checker: list[Diagnostic]):
        self.uri = uri
        self.version = version
        self.text = text
        self.chunks = chunks
        self.checker = checker  # provisional until the background check confirms them
        self._starts = [c.first_line for c in chunks]
        self._tree: ast.PolicyFile | None = None
        self.memo: dict[str, Any] = {}  # what features derive from this version (symbol tables, ...)

    @property
    def syntax(self) -> list[Diagnostic]:
        return [c.error for c in self.chunks if c.parsed[1] is not None]  # type: ignore[misc]

    @property
    def tree(self) -> ast.PolicyFile:
        """Every statement that parses, in order, at its place."""
        if self._tree is None:
            self._tree = ast.PolicyFile(self.uri, tuple(c.statement for c in self.chunks if c.parsed[0] is not None))
        return self._tree

    @property
    def diagnostics(self) -> list[Diagnostic]:
        return sorted(self.syntax + self.checker, key=lambda d: (d.span.line, d.span.column, d.code))

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.syntax + self.checker)

    def chunk_at_line(self, line: int) -> Chunk | None:
        """The chunk holding 1-based `line`."""
        i = bisect.bisect_right(self._starts, line) - 1
        return self.chunks[i] if i >= 0 else None

    def statement_at(self, line: int) -> ast.Statement | None:
        chunk = self.chunk_at_line(line)
        return chunk.statement if chunk else None


@dataclass
class FrontEnd:
    """Caches for one document; `analyse` is called on every edit."""

    uri: str
    _chunks: dict[tuple[int, str], Chunk] = field(default_factory=dict)
    _parsed: dict[str, tuple[ast.Statement | None, Diagnostic | None]] = field(default_factory=dict)
    _decl_key: tuple[ast.Statement | None, ...] | None = None
    _decl_diagnostics: list[Diagnostic] = field(default_factory=list)
    _decl_offsets: list[int] = field(default_factory=list)
    _body: dict[str, tuple[Diagnostic, ...]] = field(default_factory=dict)  # chunk text -> diagnostics at offset 0
    _cross: dict[tuple[str, int], tuple[Diagnostic, ...]] = field(default_factory=dict)  # from the last full check

    def analyse(self, text: str, version: int | None = None, check: bool = True) -> Analysis:
        """The text's statements and, with `check`, its provisional checker diagnostics."""
        chunks = self._split(text)
        checker = self._check(chunks) if check and any(c.parsed[0] is not None for c in chunks) else []
        return Analysis(self.uri, version, text, chunks, checker)

    def parse_only(self, text: str) -> Analysis:
        """The statements of a variant of the text (e.g. with a fix applied), caches read but kept."""
        return Analysis(self.uri, None, text, self._split(text, remember=False), [])

    def _split(self, text: str, remember: bool = True) -> list[Chunk]:
        placed: dict[tuple[int, str], Chunk] = {}
        parsed: dict[str, tuple[ast.Statement | None, Diagnostic | None]] = {}
        chunks: list[Chunk] = []
        for offset, chunk_text in statement_chunks(text):
            key = (offset, chunk_text)
            chunk = self._chunks.get(key) or placed.get(key)
            if chunk is None:
                result = self._parsed.get(chunk_text) or parsed.get(chunk_text)
                if result is None:
                    result = parse_statement(chunk_text, self.uri, 0)
                chunk = Chunk(offset, chunk_text, result)
            placed[key] = chunk
            parsed[chunk_text] = chunk.parsed
            chunks.append(chunk)
        if remember:  # only the current document's chunks stay cached
            self._chunks, self._parsed = placed, parsed
        return chunks

    def _check(self, chunks: list[Chunk]) -> list[Diagnostic]:
        decls = [c for c in chunks if c.parsed[0] is not None and not c.is_body]
        body = [c for c in chunks if c.is_body]
        if not any(isinstance(c.parsed[0], ast.PolicyHeader) for c in decls):
            # "no header" is reported at the first statement, whatever it is: check the whole file
            # (a file without a header is being started or is broken; it is not the one to be fast on).
            self._decl_key = None
            return _checker_diagnostics([c.statement for c in chunks if c.parsed[0] is not None])  # type: ignore[misc]
        decl_key = tuple(c.parsed[0] for c in decls)  # statements, not text: blanks and comments do not count
        offsets = [c.offset for c in decls]
        if decl_key != self._decl_key:
            self._decl_key = decl_key
            self._decl_diagnostics = _checker_diagnostics([c.statement for c in decls])  # type: ignore[misc]
            self._body = {}
        elif offsets != self._decl_offsets:
            # Same declarations, moved (lines added above one): move their diagnostics along.
            self._decl_diagnostics = [_relocate(d, self._decl_offsets, offsets) for d in self._decl_diagnostics]
        self._decl_offsets = offsets
        missing = list({c.text: c for c in body if c.text not in self._body}.values())
        if missing:
            self._check_body(decls, missing)
        out = list(self._decl_diagnostics)
        for c, key in zip(body, _occurrence_keys(body)):
            out.extend(shift(self._body.get(c.text, ()), c.offset))
            out.extend(shift(self._cross.get(key, ()), c.offset))
        self._body = {c.text: self._body[c.text] for c in body if c.text in self._body}
        return out

    def _check_body(self, decls: list[Chunk], missing: list[Chunk]) -> None:
        """Check new rules and assertions against the declarations they need, all in one call."""
        statements = [c.statement for c in _needed(decls, missing)] + [c.statement for c in missing]
        found = _checker_diagnostics(statements)  # type: ignore[arg-type]
        ordered = sorted(missing, key=lambda c: c.offset)
        starts = [c.first_line for c in ordered]
        per_chunk: dict[str, list[Diagnostic]] = {c.text: [] for c in ordered}
        for d in found:
            i = bisect.bisect_right(starts, d.span.line) - 1
            if i >= 0 and d.span.line <= ordered[i].last_line and d.code not in CROSS_STATEMENT_CODES:
                per_chunk[ordered[i].text].append(shift(d, -ordered[i].offset))
        for text, diags in per_chunk.items():
            self._body[text] = tuple(sorted(set(diags), key=lambda d: (d.span.line, d.span.column, d.code)))

    def remember_full_check(self, analysis: Analysis, diagnostics: Iterable[Diagnostic]) -> None:
        """Keep the cross-statement diagnostics of a full check of `analysis`, by chunk."""
        body = [c for c in analysis.chunks if c.is_body]
        keys = {id(c): key for c, key in zip(body, _occurrence_keys(body))}
        cross: dict[tuple[str, int], list[Diagnostic]] = {}
        for d in diagnostics:
            if d.code not in CROSS_STATEMENT_CODES:
                continue
            chunk = analysis.chunk_at_line(d.span.line)
            if chunk is not None and chunk.is_body:
                cross.setdefault(keys[id(chunk)], []).append(shift(d, -chunk.offset))
        self._cross = {k: tuple(v) for k, v in cross.items()}


def _needed(decls: list[Chunk], body: list[Chunk]) -> list[Chunk]:
    """The declarations that decide what the body statements' names mean.

    Workflows are the costly declarations to check (every flow's match), and a
    rule names few of them: keep the workflows its names resolve into. A name
    that resolves to nothing keeps them all, since the checker's suggestion
    ("did you mean") looks at every name.
    """
    domains: set[str] = set()
    stages: dict[str, set[str]] = {}
    for c in decls:
        stmt = c.parsed[0]
        if isinstance(stmt, ast.DomainDecl):
            domains.add(stmt.name.name)
        elif isinstance(stmt, ast.WorkflowDecl):
            for item in stmt.items:
                if isinstance(item, ast.StageDecl):
                    stages.setdefault(item.name.name, set()).add(stmt.name.name)
    workflows: set[str] = set()
    for c in body:
        stmt = c.parsed[0]
        for endpoint in (stmt.src, stmt.dst):  # type: ignore[union-attr]
            for atom in endpoint.atoms:
                if atom.kind != "ref":
                    continue
                parts = atom.text.split(".")
                if len(parts) == 2 and parts[0] in stages.get(parts[1], ()):
                    workflows.add(parts[0])
                elif len(parts) == 1 and parts[0] in domains:
                    continue
                elif len(parts) == 1 and parts[0] in stages:
                    workflows |= stages[parts[0]]
                else:
                    return decls
    return [c for c in decls
            if not isinstance(c.parsed[0], ast.WorkflowDecl) or c.parsed[0].name.name in workflows]


def _occurrence_keys(chunks: list[Chunk]) -> list[tuple[str, int]]:
    """(text, how many chunks before it have the same text): tells repeated statements apart."""
    seen: dict[str, int] = {}
    keys = []
    for c in chunks:
        n = seen.get(c.text, 0)
        seen[c.text] = n + 1
        keys.append((c.text, n))
    return keys


def _relocate(diag: Diagnostic, old: list[int], new: list[int]) -> Diagnostic:
    """A declaration's diagnostic moved as its declaration (and each note's) moved."""
    starts = [o + 1 for o in old]

    def move(span: Span) -> Span:
        i = bisect.bisect_right(starts, span.line) - 1
        return shift(span, new[i] - old[i]) if i >= 0 else span

    return dataclasses.replace(diag, span=move(diag.span),
                               notes=tuple(dataclasses.replace(n, span=move(n.span)) for n in diag.notes))


def _checker_diagnostics(statements: list[ast.Statement]) -> list[Diagnostic]:
    if not statements:
        return []
    _, diagnostics = check(ast.PolicyFile(statements[0].span.file, tuple(statements)))
    return diagnostics
