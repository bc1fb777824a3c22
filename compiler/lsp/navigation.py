"""Definition, references, rename and the outline: answers from the syntax tree alone.

They work on a document with errors: broken statements simply contribute
nothing.
"""

from __future__ import annotations

import re

from lsprotocol import types

from sealnet.compiler import ast
from sealnet.compiler.checker import RESERVED
from sealnet.compiler.lsp import symbols
from sealnet.compiler.lsp.convert import to_range
from sealnet.compiler.lsp.document import Analysis

# The grammar's NAME terminal (grammar/policy.lark).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*\Z")
RENAMABLE = (symbols.DOMAIN, symbols.STAGE, symbols.WORKFLOW)


def location(uri: str, span) -> types.Location:
    return types.Location(uri=uri, range=to_range(span))


def definition(analysis: Analysis, line: int, character: int) -> list[types.Location]:
    occurrence = symbols.at(analysis, line, character)
    if occurrence is None:
        return []
    span = symbols.definition(analysis, occurrence.symbol)
    return [location(analysis.uri, span)] if span is not None else []


def references(analysis: Analysis, line: int, character: int, include_declaration: bool) -> list[types.Location]:
    occurrence = symbols.at(analysis, line, character)
    if occurrence is None:
        return []
    return [location(analysis.uri, o.span)
            for o in symbols.references(analysis, occurrence.symbol, include_declaration)]


def prepare_rename(analysis: Analysis, line: int, character: int) -> types.Range | None:
    occurrence = symbols.at(analysis, line, character)
    if occurrence is None or occurrence.symbol.kind not in RENAMABLE:
        return None
    return to_range(occurrence.span)


def rename_problem(analysis: Analysis, symbol: symbols.Symbol, new_name: str) -> str | None:
    """Why `new_name` cannot replace the symbol's name, or None."""
    if not NAME.match(new_name):
        return f"`{new_name}` is not a name (letters, digits, `_`, inner `-`)"
    if new_name in RESERVED:
        return f"`{new_name}` is a keyword"
    decls = symbols.declarations(analysis)
    if symbol.kind in (symbols.DOMAIN, symbols.STAGE) and (
            new_name in decls.domains or new_name in decls.stages_by_name):
        return f"`{new_name}` already names a domain or stage"
    if symbol.kind == symbols.WORKFLOW and new_name in decls.workflows:
        return f"`{new_name}` already names a workflow"
    return None


def rename(analysis: Analysis, line: int, character: int, new_name: str) -> types.WorkspaceEdit | str | None:
    """The edit, or a sentence saying why not, or None when nothing renamable is there."""
    occurrence = symbols.at(analysis, line, character)
    if occurrence is None or occurrence.symbol.kind not in RENAMABLE:
        return None
    problem = rename_problem(analysis, occurrence.symbol, new_name)
    if problem is not None:
        return problem
    edits = [types.TextEdit(range=to_range(o.span), new_text=new_name)
             for o in symbols.references(analysis, occurrence.symbol)]
    return types.WorkspaceEdit(changes={analysis.uri: edits})


# -- outline ------------------------------------------------------------------------------------
def document_symbols(analysis: Analysis) -> list[types.DocumentSymbol]:
    out = []
    for chunk in analysis.chunks:
        if chunk.parsed[0] is None:
            continue
        symbol = _outline(chunk.statement)  # type: ignore[arg-type]
        if symbol is not None:
            out.append(symbol)
    return out


def _symbol(name: str, detail: str, kind: types.SymbolKind, span, selection,
            children: list[types.DocumentSymbol] | None = None) -> types.DocumentSymbol:
    return types.DocumentSymbol(name=name, detail=detail, kind=kind, range=to_range(span),
                                selection_range=to_range(selection), children=children)


def _outline(stmt: ast.Statement) -> types.DocumentSymbol | None:
    K = types.SymbolKind
    if isinstance(stmt, ast.PolicyHeader):
        return _symbol(f'policy "{stmt.name}"', f"version {stmt.version}", K.File, stmt.span, stmt.span)
    if isinstance(stmt, ast.DomainDecl):
        return _symbol(stmt.name.name, "domain", K.Namespace, stmt.span, stmt.name.span)
    if isinstance(stmt, ast.WorkflowDecl):
        children = []
        for item in stmt.items:
            if isinstance(item, ast.StageDecl):
                children.append(_symbol(item.name.name, f"stage in {item.domain.name}", K.Field, item.span, item.name.span))
            else:
                children.append(_symbol(f"{item.src.name} -> {item.dst.name}", "flow", K.Event, item.span, item.span))
        return _symbol(stmt.name.name, "workflow", K.Class, stmt.span, stmt.name.span, children)
    if isinstance(stmt, ast.RuleDecl):
        return _symbol(stmt.name.name, f"{stmt.action.name} {stmt.match_text()}", K.Function, stmt.span, stmt.name.span)
    if isinstance(stmt, ast.DefaultDecl):
        return _symbol("default", stmt.action.name, K.Constant, stmt.span, stmt.span)
    if isinstance(stmt, ast.CipherDecl):
        return _symbol("cipher", stmt.suite.name, K.Constant, stmt.span, stmt.span)
    if isinstance(stmt, ast.AssertDecl):
        return _symbol(f"assert {stmt.kind.name}", stmt.match_text(), K.Boolean, stmt.span, stmt.span)
    return None
