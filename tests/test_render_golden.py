"""Golden tests of the text diagnostics: what a person sees, byte for byte.

Regenerate after an intended change with UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealnet.compiler.frontend import compile_text
from sealnet.compiler.render import render_all

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", sorted(p.stem for p in GOLDEN.glob("*.policy")))
def test_golden_text_diagnostics(name: str) -> None:
    source = (GOLDEN / f"{name}.policy").read_text()
    _, diagnostics = compile_text(source, f"{name}.policy")
    rendered = render_all(diagnostics, lambda _f: source, color=False) + "\n"
    expected_path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(rendered)
    assert rendered == expected_path.read_text()
