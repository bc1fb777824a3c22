"""The fast front end (compiler/fastparse.py) against Lark's parser, the reference.

Whatever the text, the fast path either declines (None: Lark parses and
reports the errors) or gives exactly Lark's AST, spans and comments included,
for the whole file and for each statement-sized chunk the language server
and the error recovery parse. The texts are well-formed policies written with
every kind of spacing (blanks, newlines, comments, `;`, no space at all where
Lark's lexer still splits), names that look like keywords, token soup and
mutated examples; the benchmarks' generators must be taken whole by the fast
path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealnet.compiler import fastparse
from sealnet.compiler.parser import (parse, parse_statement, parse_statement_with_lark, parse_with_lark,
                                     statement_chunks)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gen_mix  # noqa: E402
import gen_policy  # noqa: E402
from test_fuzz_parser import EXAMPLES, soup  # noqa: E402

# Names and words near the edges of Lark's contextual lexer: keywords, names
# starting with a keyword it reads as a prefix, hyphens, underscores.
NAMES = ["a", "b", "lab", "d0", "s1", "w", "_x", "a-b", "x-1", "anyx", "any", "tcpx", "udp", "portal",
         "port", "fromage", "to", "rule", "policy", "seal", "sealed", "allowed", "plaintext", "tee", "nodes"]
CIDRS = ["198.18.1.0/24", "10.0.0.1", "1.2.3.4/32", "999.1.1.1/40", "0.0.0.0/0"]
INTS = ["0", "7", "80", "080", "65535", "70000", "1" + "0" * 30]
# What may stand between two tokens: blanks, line ends, comments, `;`, or nothing.
GAPS = [" ", " ", " ", "  ", "\t", "\n", "\r\n", " # note\n", "#c\n  ", "", " ; ", "\n;\n", "\f"]


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def assert_agrees(text: str) -> bool:
    """The fast path declines or matches Lark, per file and per chunk; True if it took the file."""
    fast = fastparse.parse_file(text, "t.policy")
    if fast is not None:
        tree, diagnostics = parse_with_lark(text, "t.policy")
        assert diagnostics == [] and tree == fast, text
    for offset, chunk in statement_chunks(text):
        one = fastparse.parse_statement(chunk, "t.policy", offset)
        if one is not None:
            assert parse_statement_with_lark(chunk, "t.policy", offset) == (one, None), chunk
        result = parse_statement(chunk, "t.policy", offset)
        if result != (None, None):  # (None, None): blank or only comments, decided before parsing
            assert result == parse_statement_with_lark(chunk, "t.policy", offset), chunk
    assert parse(text, "t.policy") == ((fast, []) if fast is not None else parse_with_lark(text, "t.policy"))
    return fast is not None


@st.composite
def endpoint(draw) -> list[str]:
    atom = st.sampled_from(NAMES + CIDRS + ["w.s1", "a.b", "w.any", "any.b"])
    out = ["!"] * draw(st.integers(0, 2))
    if draw(st.booleans()):
        return out + [draw(atom)]
    out.append("{")
    for i in range(draw(st.integers(1, 3))):
        out += ([","] if i else []) + [draw(atom)]
    return out + ["}"]


@st.composite
def ports(draw) -> list[str]:
    def item() -> list[str]:
        lo = draw(st.sampled_from(INTS))
        return [lo, "-", draw(st.sampled_from(INTS))] if draw(st.booleans()) else [lo]

    if draw(st.booleans()):
        return ["port"] + item()
    out = ["port", "{"]
    for i in range(draw(st.integers(1, 3))):
        out += ([","] if i else []) + item()
    return out + ["}"]


@st.composite
def statement(draw) -> list[str]:
    kind = draw(st.sampled_from(["rule", "rule", "rule", "domain", "workflow", "assert", "other"]))
    name = st.sampled_from(NAMES)
    seps = [";"] * draw(st.sampled_from([0, 0, 0, 1, 2]))
    if kind in ("rule", "assert"):
        if kind == "rule":
            out = ["rule", draw(name), ":", draw(st.sampled_from(["deny", "allow", "seal"]))]
            out += ["plaintext"] if draw(st.booleans()) else []
        else:
            out = ["assert", draw(st.sampled_from(["sealed", "never", "reachable"]))]
        out += [draw(st.sampled_from(["tcp", "udp", "icmp"]))] if draw(st.booleans()) else []
        out += ["from"] + draw(endpoint()) + ["to"] + draw(endpoint())
        return out + (draw(ports()) if draw(st.booleans()) else []) + seps
    if kind == "domain":
        out = ["domain", draw(name), "{"]
        for _ in range(draw(st.integers(0, 3))):
            attr = draw(st.sampled_from(["tee", "nodes", "measurement", "control"]))
            if attr == "tee":
                out += ["tee", draw(st.sampled_from(["tdx", "sev-snp", "none"] + NAMES))]
            elif attr == "nodes":
                out += ["nodes", draw(st.sampled_from(CIDRS))] + ([",", draw(st.sampled_from(CIDRS))] if draw(st.booleans()) else [])
            elif attr == "measurement":
                out += ["measurement", '"sha384:ab # not a comment"']
            else:
                out += ["control", draw(st.sampled_from(CIDRS)), ":", draw(st.sampled_from(INTS))]
            out += [";"] * draw(st.integers(0, 1))
        return out + ["}"] + seps
    if kind == "workflow":
        out = ["workflow", draw(name), "{"]
        for _ in range(draw(st.integers(0, 3))):
            if draw(st.booleans()):
                out += [draw(name), ":", draw(name)] + (draw(ports()) if draw(st.booleans()) else [])
            else:
                out += [draw(name), "->", draw(name)]
                out += [draw(st.sampled_from(["tcp", "udp", "icmp"]))] if draw(st.booleans()) else []
            out += [";"] * draw(st.integers(0, 1))
        return out + ["}"] + seps
    return draw(st.sampled_from([["default", "deny"], ["default", "seal"], ["cipher", "chacha20-poly1305"],
                                 ["cipher", "any"], ["policy", '"q"', "version", "3"]])) + seps


@st.composite
def policy_text(draw, gaps: list[str]) -> str:
    tokens = ["policy", draw(st.sampled_from(['"p"', "p", "version"])), "version", draw(st.sampled_from(INTS))]
    for _ in range(draw(st.integers(0, 6))):
        tokens += ["\n"] + draw(statement())
    out = []
    for token in tokens:
        if token == "\n":
            out.append(draw(st.sampled_from(["\n", "\n\n", "\n# comment\n", " ", "\n  "])))
        else:
            out += [token, draw(st.sampled_from(gaps))]
    return "".join(out)


@fuzz(400)
@given(policy_text([" "] * 8 + ["\t", " # c\n", "\n"]))
def test_well_spaced_policies(text: str) -> None:
    assert_agrees(text)


@fuzz(700)
@given(policy_text(GAPS))
def test_any_spacing(text: str) -> None:
    assert_agrees(text)


@fuzz(500)
@given(st.binary(max_size=40))
def test_token_soup(indices: bytes) -> None:
    assert_agrees(soup(indices))


@fuzz(300)
@given(st.sampled_from(EXAMPLES), st.randoms(use_true_random=False))
def test_mutated_examples(example: str, rnd) -> None:
    text = example
    for _ in range(rnd.randint(1, 3)):
        pos = rnd.randint(0, len(text))
        choice = rnd.choice(["delete", "insert", "glue"])
        if choice == "delete":
            text = text[:pos] + text[min(len(text), pos + rnd.randint(1, 6)):]
        elif choice == "insert":
            text = text[:pos] + rnd.choice(NAMES + CIDRS + INTS + GAPS + ["{", "}", ",", "!", "-", "->", "."]) + text[pos:]
        else:  # remove the blanks around a position, gluing two tokens together
            left, right = text[:pos].rstrip(" \t"), text[pos:].lstrip(" \t")
            text = left + right
    assert_agrees(text)


def test_examples_take_the_fast_path() -> None:
    for text in EXAMPLES:
        assert assert_agrees(text)


@pytest.mark.parametrize("generate", [gen_mix.generate, gen_policy.generate])
def test_benchmark_policies_take_the_fast_path(generate) -> None:
    assert assert_agrees(generate(400))


@pytest.mark.parametrize("text", [
    "policy p version 1\nrule r: allow from anyx to d0\n",  # Lark: `any` then `x`
    "policy p version 1\nworkflow w { a: d0\n b: d1\n a -> b\n tcpx: d2 }\n",  # `tcp` then stage `x`
    "policy p version 1\nrule r: allow from d0 to d1 port80\n",  # `port` then 80
    "policy p version 1\nrule r: allowtcp from d0 to d1\n",
    "policy p version 1\nworkflow w { a: d0 port 80; policy: x }\n",  # a keyword where a NAME may come
])
def test_declines_what_lark_reads_differently(text: str) -> None:
    assert fastparse.parse_file(text, "t.policy") is None
    assert_agrees(text)


def test_declines_numbers_too_long_for_int() -> None:
    # int() refuses over 4,300 digits: what happens then is the Lark path's business.
    assert fastparse.parse_file("policy p version " + "9" * 5000 + "\n", "t.policy") is None
    assert fastparse.parse_statement("rule r: allow from a to b port " + "8" * 5000, "t.policy") is None


@pytest.mark.parametrize("text", [
    "policy p version 1\nrule r: allow from d0 to d1\n;\n",  # the `;` on the next line is the rule's
    "policy p version 1\nrule r: allow from d0 to d1\n port 80 # web\n",
    "policy p version 1\nworkflow w { a: d0\n b: d1 port 80\n ; a -> b\n tcp }\n",
])
def test_statements_over_lines_are_read_token_by_token(text: str) -> None:
    assert assert_agrees(text)


def test_spans_of_a_rule_with_separators_and_sets() -> None:
    text = 'policy p version 1\n  rule r-1 : seal plaintext tcp from ! !{a, 10.0.0.0/8} to w.s port {80 - 90, 443} ;;\n'
    assert assert_agrees(text)
