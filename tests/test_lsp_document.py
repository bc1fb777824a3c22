"""The language server's incremental front end against the real parser and checker.

A sequence of random edits goes through one FrontEnd (so its caches carry
from edit to edit); after each, its tree must equal a whole-file parse and
its diagnostics must equal a whole-file check, once the cross-statement
diagnostics of the full check are handed back as the server does.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("lsprotocol")

from sealnet.compiler.checker import check  # noqa: E402
from sealnet.compiler.lsp.document import CROSS_STATEMENT_CODES, FrontEnd, shift  # noqa: E402
from sealnet.compiler.parser import parse  # noqa: E402

ROOT = Path(__file__).resolve().parent
SOURCES = sorted((ROOT.parent / "examples").glob("*.policy")) + [
    ROOT / "golden" / "semantic.policy", ROOT / "golden" / "warnings.policy"]
SNIPPETS = [
    "rule extra: allow tcp from lab to lab port 80",
    "rule extra: deny from nowhere to any",
    "rule to_align: seal tcp from hospital to lab port 7001",
    "domain spare { tee tdx; nodes 198.18.77.0/24 }",
    "assert never from any to 198.18.9.0/24",
    "# a comment",
    "",
    "rule stages: seal tcp from genomics.ingest to align",
    "rule stage_typo: allow from genomics.ingestt to report",
    "assert reachable tcp from ingest to genomics.align",
    "workflow genomics { ingest: hospital port 7000; align: lab port 7001; ingest -> align tcp }",
    "rule broken: allow from",
    "default allow",
]


def _edit(rnd: random.Random, lines: list[str]) -> list[str]:
    lines = list(lines)
    i = rnd.randrange(len(lines) + 1)
    kind = rnd.randrange(5)
    if kind == 0 and lines:
        del lines[min(i, len(lines) - 1)]
    elif kind == 1:
        lines.insert(i, rnd.choice(SNIPPETS))
    elif kind == 2 and lines:
        j = min(i, len(lines) - 1)
        lines.insert(j, lines[j])  # a repeated statement: names defined twice, rules repeated
    elif kind == 3 and lines:
        j = min(i, len(lines) - 1)
        lines[j] = lines[j].replace("allow", "deny") if "allow" in lines[j] else lines[j] + "  # note"
    else:
        lines.insert(i, "")
    return lines


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_incremental_front_end_agrees_with_the_whole_file_parse_and_check(source: Path) -> None:
    rnd = random.Random(source.name)
    lines = source.read_text(encoding="utf-8").split("\n")
    front_end = FrontEnd("doc.policy")
    for _ in range(60):
        lines = _edit(rnd, lines)
        text = "\n".join(lines)
        analysis = front_end.analyse(text)
        tree, syntax = parse(text, "doc.policy")
        if tree is None:
            assert set(analysis.syntax) == set(syntax)  # the same statement-by-statement report
            continue
        assert not analysis.syntax
        assert analysis.tree.statements == tree.statements
        _, full = check(tree)
        front_end.remember_full_check(analysis, full)
        fast = set(front_end.analyse(text).diagnostics)
        assert fast == set(full), (sorted(fast - set(full), key=str), sorted(set(full) - fast, key=str))
        # Before the full check is handed back, only cross-statement diagnostics may be missing.
        assert {d for d in set(full) - set(analysis.diagnostics)} <= {d for d in full if d.code in CROSS_STATEMENT_CODES}


def test_shift_moves_every_span_and_nothing_else() -> None:
    tree, _ = parse((ROOT.parent / "examples" / "genomics.policy").read_text(encoding="utf-8"), "g")
    assert tree is not None
    moved = shift(tree.statements, 7)
    again = shift(moved, -7)
    assert again == tree.statements
    assert all(m.span.line == s.span.line + 7 and m.span.column == s.span.column
               for m, s in zip(moved, tree.statements))


@pytest.mark.parametrize("source", SOURCES[:3] + [None], ids=[p.name for p in SOURCES[:3]] + ["generated-300"])
def test_what_hover_says_a_rule_decides_is_what_it_decides(source: Path | None) -> None:
    """Cube subtraction (hover) against the first-match reference semantics, on sampled packets."""
    import sys

    from sealnet.compiler.frontend import compile_text
    from sealnet.compiler.ir import Packet
    from sealnet.compiler.lsp.hover import decided_region
    from sealnet.compiler.regions import RuleIndex
    from sealnet.compiler.semantics import decide

    if source is None:
        sys.path.insert(0, str(ROOT.parent / "benchmarks"))
        from gen_policy import generate
        text = generate(300)
    else:
        text = source.read_text(encoding="utf-8")
    policy, _ = compile_text(text, "p")
    if policy is None:
        pytest.skip("the golden file has errors on purpose")
    index = RuleIndex.build(policy)
    rnd = random.Random(3)

    def value(intervals) -> int:
        lo, hi = rnd.choice(intervals)
        return rnd.choice([lo, hi, rnd.randint(lo, hi)])

    def sample(cube) -> Packet:
        proto = value(cube.proto)
        return Packet(value(cube.src), value(cube.dst), proto, 0, value(cube.dport) if proto in (6, 17) else 0)

    checked = 0
    for rule in policy.rules:
        region, exact = decided_region(policy, index, rule)
        assert exact
        for cube in rule.match.cubes:
            for _ in range(20):
                packet = sample(cube)
                if not rule.match.matches(packet):
                    continue  # a portless protocol drawn from a cube whose ports exclude 0
                assert (decide(policy, packet).rule_index == rule.index) == region.matches(packet), (rule.name, packet)
                checked += 1
    assert checked > 0
