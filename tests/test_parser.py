"""The grammar and parser: what parses, the AST and its spans, and syntax errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sealnet.compiler import ast
from sealnet.compiler.parser import parse

ROOT = Path(__file__).resolve().parent.parent


def _design_snippets() -> list[str]:
    """Every policy snippet in DESIGN.md (fenced blocks that declare a policy or rules)."""
    design = ROOT.parent / "shared" / "DESIGN.md"
    if not design.exists():
        pytest.skip("../shared/DESIGN.md is not beside the checkout")
    blocks = re.findall(r"```\n(.*?)```", design.read_text(), re.S)
    return [b for b in blocks if re.search(r"^(policy|rule|domain) ", b, re.M)]


def test_every_design_snippet_parses() -> None:
    snippets = _design_snippets()
    assert snippets, "DESIGN.md should contain a policy sketch"
    for text in snippets:
        tree, diagnostics = parse(text, "DESIGN.md")
        assert diagnostics == [] and tree is not None


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.policy")), ids=lambda p: p.name)
def test_examples_parse(path: Path) -> None:
    tree, diagnostics = parse(path.read_text(), str(path))
    assert diagnostics == [] and tree is not None


def test_rule_ast_and_spans() -> None:
    text = 'policy "p" version 2\nrule r1: seal tcp from a to !{b, 198.18.0.0/16} port {80, 7000-7100}\n'
    tree, _ = parse(text, "x.policy")
    assert tree is not None
    header, rule = tree.statements
    assert isinstance(header, ast.PolicyHeader) and header.name == "p" and header.version == 2
    assert isinstance(rule, ast.RuleDecl)
    assert (rule.name.name, rule.action.name, rule.proto.name) == ("r1", "seal", "tcp")
    assert rule.dst.negated and rule.dst.is_set
    assert [a.text for a in rule.dst.atoms] == ["b", "198.18.0.0/16"]
    assert [(p.lo, p.hi) for p in rule.ports.items] == [(80, 80), (7000, 7100)]
    # spans are 1-based; end column is exclusive
    assert (rule.span.line, rule.span.column) == (2, 1)
    assert (rule.name.span.line, rule.name.span.column, rule.name.span.end_column) == (2, 6, 8)
    b = rule.dst.atoms[0]
    assert text.split("\n")[1][b.span.column - 1:b.span.end_column - 1] == "b"


def test_separators_newlines_and_semicolons_are_equivalent() -> None:
    one = 'policy "p" version 1\ndomain a { tee tdx; nodes 198.18.1.0/24; measurement "x" }\n'
    many = 'policy "p" version 1\ndomain a {\n  tee tdx\n  nodes 198.18.1.0/24\n  measurement "x"\n}\n'
    t1, _ = parse(one, "f")
    t2, _ = parse(many, "f")
    assert [type(a) for a in t1.statements[1].attrs] == [type(a) for a in t2.statements[1].attrs]


def test_comments_are_collected_with_positions() -> None:
    tree, _ = parse('# top\npolicy "p" version 1  # trailing\n', "f")
    assert [(c.text, c.span.line, c.span.column) for c in tree.comments] == [("# top", 1, 1), ("# trailing", 2, 23)]


def test_double_negation_and_hyphenated_names() -> None:
    tree, diagnostics = parse('policy "p" version 1\nrule r: deny from !!eu-west to any\nworkflow w { a->b }\n', "f")
    assert not diagnostics
    rule = tree.statements[1]
    assert rule.src.negations == 2 and not rule.src.negated and rule.src.atoms[0].text == "eu-west"
    flow = tree.statements[2].items[0]
    assert (flow.src.name, flow.dst.name) == ("a", "b")


def test_every_broken_statement_is_reported() -> None:
    text = (
        'policy "p" version 1\n'
        "rule a seal from x to y\n"            # missing colon
        "rule b: allow from x to y\n"          # fine
        "rule c: permit from x to y\n"         # unknown action
        'domain d { tee tdx; nodes "oops" }\n'  # string where a CIDR belongs
        "assert maybe from x to y\n"           # unknown assertion kind
    )
    tree, diagnostics = parse(text, "f")
    assert tree is None
    assert [(d.span.line, d.code) for d in diagnostics] == [(2, "E001"), (4, "E001"), (5, "E001"), (6, "E001")]
    assert "expected `:`" in diagnostics[0].message
    assert "an action (deny, allow or seal)" in diagnostics[1].message
    assert "an IPv4 address or CIDR" in diagnostics[2].message
    assert "an assertion kind" in diagnostics[3].message
    # no Lark terminal names leak into messages
    for d in diagnostics:
        assert not re.search(
            r"__ANON|\$END|\b(NAME|INT|STRING|ASSERT_KIND|PROTO|ACTION|LBRACE|RBRACE|COLON|SEMICOLON|COMMA)\b",
            d.message), d.message


def test_unterminated_string_and_stray_character() -> None:
    _, diagnostics = parse('policy "p version 1\nrule r: deny from a to b $\n', "f")
    assert [(d.code, d.span.line, d.span.column) for d in diagnostics] == [("E002", 1, 8), ("E002", 2, 26)]
    assert diagnostics[0].message == "unterminated string"


def test_end_of_input_points_after_last_token() -> None:
    _, diagnostics = parse('policy "p" version 1\nrule r: deny from a to b port 7000-\n\n\n', "f")
    (d,) = diagnostics
    assert (d.span.line, d.span.column) == (2, 36)
    assert "a number" in d.message
