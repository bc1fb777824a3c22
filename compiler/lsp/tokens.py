"""Semantic tokens: keywords, values and names coloured by what they name.

Lexical, line by line, so a broken document is coloured too; names are
classified by the declarations that parse (a domain, workflow or stage).
"""

from __future__ import annotations

import re

from sealnet.compiler.checker import RESERVED
from sealnet.compiler.ir import PROTO_NUMBERS, Action, AssertKind, TeeKind
from sealnet.compiler.lsp import symbols
from sealnet.compiler.lsp.document import Analysis
from sealnet.contracts.manifest import CIPHER_SUITES

TOKEN_TYPES = ["keyword", "namespace", "class", "property", "function", "enumMember", "number", "string",
               "comment", "operator"]
_TYPE = {name: i for i, name in enumerate(TOKEN_TYPES)}
VALUES = frozenset({a.value for a in Action} | set(PROTO_NUMBERS) | {k.value for k in AssertKind}
                   | {k.value for k in TeeKind} | {"any", "plaintext"} | set(CIPHER_SUITES))
KEYWORDS = frozenset(RESERVED - VALUES)
_LEXEME = re.compile(r"""(?P<comment>\#.*)
                       |(?P<string>"[^"\n]*"?)
                       |(?P<number>\d+(?:\.\d+){3}(?:/\d+)?|\d+)
                       |(?P<word>[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*)
                       |(?P<operator>->|!|:|\.)""", re.VERBOSE)


def semantic_tokens(analysis: Analysis) -> list[int]:
    """LSP's relative encoding: (line delta, start delta, length, type, modifiers) per token."""
    decls = symbols.declarations(analysis)
    stages = set(decls.stages_by_name)
    data: list[int] = []
    last_line = last_start = 0
    for number, line in enumerate(analysis.text.split("\n")):
        previous_word = ""
        for m in _LEXEME.finditer(line):
            kind = m.lastgroup
            text = m.group()
            if kind == "word":
                if text in KEYWORDS:
                    kind = "keyword"
                elif text in VALUES and previous_word != "rule":
                    kind = "enumMember"
                elif previous_word == "rule":
                    kind = "function"
                elif text in decls.domains:
                    kind = "namespace"
                elif text in decls.workflows:
                    kind = "class"
                elif text in stages:
                    kind = "property"
                else:
                    previous_word = text
                    continue
                previous_word = text
            delta_line = number - last_line
            delta_start = m.start() - last_start if delta_line == 0 else m.start()
            data += [delta_line, delta_start, len(text), _TYPE[kind], 0]  # type: ignore[index]
            last_line, last_start = number, m.start()
    return data
