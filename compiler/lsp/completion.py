"""Completion: keywords, values, and the names the declarations define."""

from __future__ import annotations

import re

from lsprotocol import types

from sealnet.compiler.lsp import symbols
from sealnet.compiler.lsp.document import Analysis
from sealnet.compiler.lsp.tokens import KEYWORDS, VALUES
from sealnet.compiler.parser import STATEMENT_KEYWORDS


_WORKFLOW_DOT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)\.[A-Za-z0-9_-]*$")


def completions(analysis: Analysis, line: int, character: int) -> list[types.CompletionItem]:
    lines = analysis.text.split("\n")
    prefix = lines[line][:character] if line < len(lines) else ""
    K = types.CompletionItemKind
    if not prefix.strip() or prefix.strip().isidentifier() and prefix == prefix.lstrip():
        # At the start of a line: a statement.
        return [types.CompletionItem(label=k, kind=K.Keyword) for k in STATEMENT_KEYWORDS]
    decls = symbols.declarations(analysis)
    qualified = _WORKFLOW_DOT.search(prefix)
    if qualified is not None:
        # After `workflow.`: that workflow's stages.
        workflow = qualified.group(1)
        return [types.CompletionItem(label=stage, kind=K.Field, detail=f"stage in {decl.domain.name}")
                for (wf, stage), decl in decls.stages.items() if wf == workflow]
    items = [types.CompletionItem(label=k, kind=K.Keyword) for k in sorted(KEYWORDS)]
    items += [types.CompletionItem(label=v, kind=K.EnumMember) for v in sorted(VALUES)]
    items += [types.CompletionItem(label=d, kind=K.Module, detail="domain") for d in decls.domains]
    items += [types.CompletionItem(label=w, kind=K.Class, detail="workflow") for w in decls.workflows]
    for (wf, stage), decl in decls.stages.items():
        items.append(types.CompletionItem(label=f"{wf}.{stage}", kind=K.Field, detail=f"stage in {decl.domain.name}"))
        if len(decls.stages_by_name.get(stage, ())) == 1 and stage not in decls.domains:
            items.append(types.CompletionItem(label=stage, kind=K.Field, detail=f"stage {wf}.{stage}"))
    return items
