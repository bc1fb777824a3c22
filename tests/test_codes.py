"""One registry of diagnostic codes (compiler/codes.py), and docs/diagnostics.md documents exactly it."""

from __future__ import annotations

import re
from pathlib import Path

from sealnet.compiler import checker, codes, findings, parser

DOC = Path(__file__).resolve().parent.parent / "docs" / "diagnostics.md"


def test_the_docs_table_is_the_registry() -> None:
    documented = re.findall(r"^\| ([EWV]\d{3}) \|", DOC.read_text(), re.MULTILINE)
    assert len(documented) == len(set(documented)), "a code is documented twice"
    assert sorted(documented) == sorted(codes.REGISTRY)


def test_modules_use_the_registry() -> None:
    assert parser.SYNTAX_ERROR is codes.SYNTAX_ERROR and parser.LEXICAL_ERROR is codes.LEXICAL_ERROR
    assert checker.UNDEFINED_NAME is codes.UNDEFINED_NAME and checker.DOMAIN_WITHOUT_NODES is codes.DOMAIN_WITHOUT_NODES
    assert set(findings.CODES.values()) <= set(codes.REGISTRY) and findings.UNDECIDED_CODE == codes.UNDECIDED
    # no module spells a code by hand any more
    root = DOC.parent.parent / "compiler"
    for path in list(root.glob("*.py")) + list(root.glob("commands/*.py")):
        if path.name == "codes.py":
            continue
        spelled = re.findall(r"""["']([EWV]\d{3})["']""", path.read_text())
        assert not spelled, f"{path.name} spells {spelled} instead of importing compiler/codes.py"
