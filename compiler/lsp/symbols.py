"""Names in a policy: where each domain, workflow, stage and rule is defined and used.

Resolution follows the checker's rule: a bare name in an endpoint is a
domain, or else the one workflow stage of that name; `workflow.stage` names a
stage and its workflow; a stage's placement names a domain; a flow's ends
name stages of its own workflow. A name that resolves to nothing (or to
several stages) is no symbol: the checker reports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from sealnet.compiler import ast
from sealnet.compiler.ir import Span
from sealnet.compiler.lsp.document import Analysis

DOMAIN, WORKFLOW, STAGE, RULE = "domain", "workflow", "stage", "rule"


@dataclass(frozen=True)
class Symbol:
    kind: str
    key: tuple[str, ...]  # (name,) or (workflow, stage)

    @property
    def name(self) -> str:
        return self.key[-1]

    @property
    def qualified(self) -> str:
        return ".".join(self.key)


@dataclass(frozen=True)
class Occurrence:
    symbol: Symbol
    span: Span  # the name's own characters
    definition: bool


@dataclass
class Declarations:
    """What the declarations define, from the declaration statements alone."""

    domains: dict[str, ast.DomainDecl]
    workflows: dict[str, ast.WorkflowDecl]
    stages: dict[tuple[str, str], ast.StageDecl]
    stages_by_name: dict[str, list[tuple[str, str]]]

    def resolve(self, text: str) -> list[Symbol]:
        """The symbols an endpoint reference names, first part first (empty if unresolved)."""
        parts = text.split(".")
        if len(parts) == 2:
            if tuple(parts) in self.stages:
                return [Symbol(WORKFLOW, (parts[0],)), Symbol(STAGE, (parts[0], parts[1]))]
            return []
        if text in self.domains:
            return [Symbol(DOMAIN, (text,))]
        found = self.stages_by_name.get(text, [])
        return [Symbol(STAGE, found[0])] if len(found) == 1 else []


def declarations(analysis: Analysis) -> Declarations:
    found = analysis.memo.get("declarations")
    if found is None:
        domains: dict[str, ast.DomainDecl] = {}
        workflows: dict[str, ast.WorkflowDecl] = {}
        stages: dict[tuple[str, str], ast.StageDecl] = {}
        by_name: dict[str, list[tuple[str, str]]] = {}
        for chunk in analysis.chunks:
            if isinstance(chunk.parsed[0], ast.DomainDecl):
                decl = chunk.statement
                domains.setdefault(decl.name.name, decl)  # type: ignore[union-attr]
            elif isinstance(chunk.parsed[0], ast.WorkflowDecl):
                wf = chunk.statement
                workflows.setdefault(wf.name.name, wf)  # type: ignore[union-attr]
                for item in wf.items:  # type: ignore[union-attr]
                    if isinstance(item, ast.StageDecl):
                        key = (wf.name.name, item.name.name)  # type: ignore[union-attr]
                        if key not in stages:
                            stages[key] = item
                            by_name.setdefault(item.name.name, []).append(key)
        found = analysis.memo["declarations"] = Declarations(domains, workflows, stages, by_name)
    return found


def _ident(symbol: Symbol, ident: ast.Ident, definition: bool = False) -> Occurrence:
    return Occurrence(symbol, ident.span, definition)


def in_statement(stmt: ast.Statement, decls: Declarations) -> Iterator[Occurrence]:
    """Every name a statement defines or uses."""
    if isinstance(stmt, ast.DomainDecl):
        yield _ident(Symbol(DOMAIN, (stmt.name.name,)), stmt.name, True)
    elif isinstance(stmt, ast.WorkflowDecl):
        wf = stmt.name.name
        yield _ident(Symbol(WORKFLOW, (wf,)), stmt.name, True)
        for item in stmt.items:
            if isinstance(item, ast.StageDecl):
                yield _ident(Symbol(STAGE, (wf, item.name.name)), item.name, True)
                if item.domain.name in decls.domains:
                    yield _ident(Symbol(DOMAIN, (item.domain.name,)), item.domain)
            else:
                for end in (item.src, item.dst):
                    if (wf, end.name) in decls.stages:
                        yield _ident(Symbol(STAGE, (wf, end.name)), end)
    elif isinstance(stmt, (ast.RuleDecl, ast.AssertDecl)):
        if isinstance(stmt, ast.RuleDecl):
            yield _ident(Symbol(RULE, (stmt.name.name,)), stmt.name, True)
        for endpoint in (stmt.src, stmt.dst):
            for atom in endpoint.atoms:
                if atom.kind == "ref":
                    yield from _reference(atom, decls)


def _reference(atom: ast.EndpointAtom, decls: Declarations) -> Iterator[Occurrence]:
    symbols = decls.resolve(atom.text)
    s = atom.span
    if len(symbols) == 2:  # workflow.stage: one occurrence per part
        wf, stage = atom.text.split(".")
        yield Occurrence(symbols[0], Span(s.file, s.line, s.column, s.line, s.column + len(wf)), False)
        start = s.column + len(wf) + 1
        yield Occurrence(symbols[1], Span(s.file, s.line, start, s.line, start + len(stage)), False)
    elif symbols:
        yield Occurrence(symbols[0], s, False)


def all_occurrences(analysis: Analysis) -> list[Occurrence]:
    found = analysis.memo.get("occurrences")
    if found is None:
        decls = declarations(analysis)
        found = analysis.memo["occurrences"] = [
            o for chunk in analysis.chunks if chunk.parsed[0] is not None
            for o in in_statement(chunk.statement, decls)]  # type: ignore[arg-type]
    return found


def at(analysis: Analysis, line: int, character: int) -> Occurrence | None:
    """The name under a 0-based position (looking only at that statement)."""
    chunk = analysis.chunk_at_line(line + 1)
    if chunk is None or chunk.parsed[0] is None:
        return None
    column = character + 1
    for o in in_statement(chunk.statement, declarations(analysis)):  # type: ignore[arg-type]
        s = o.span
        if s.line == line + 1 and s.column <= column <= s.end_column:
            return o
    return None


def definition(analysis: Analysis, symbol: Symbol) -> Span | None:
    decls = declarations(analysis)
    if symbol.kind == DOMAIN and symbol.key[0] in decls.domains:
        return decls.domains[symbol.key[0]].name.span
    if symbol.kind == WORKFLOW and symbol.key[0] in decls.workflows:
        return decls.workflows[symbol.key[0]].name.span
    if symbol.kind == STAGE and symbol.key in decls.stages:
        return decls.stages[symbol.key].name.span  # type: ignore[index]
    if symbol.kind == RULE:
        for o in all_occurrences(analysis):
            if o.symbol == symbol and o.definition:
                return o.span
    return None


def references(analysis: Analysis, symbol: Symbol, include_definition: bool = True) -> list[Occurrence]:
    return [o for o in all_occurrences(analysis)
            if o.symbol == symbol and (include_definition or not o.definition)]
