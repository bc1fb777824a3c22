"""Fuzzing the front end: whatever the input, only clean diagnostics come out.

The normal suite runs well over 10,000 generated inputs across the tests
below; `-m long` runs a much larger campaign.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealnet.compiler.diagnostics import Severity
from sealnet.compiler.frontend import compile_text
from sealnet.compiler.render import render_all

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [p.read_text() for p in sorted((ROOT / "examples").glob("*.policy"))]
CODE = re.compile(r"^[EW]\d{3}$")
VOCABULARY = [
    "policy", "version", "domain", "workflow", "rule", "default", "assert", "tee", "nodes",
    "measurement", "control", "from", "to", "port", "deny", "allow", "seal", "plaintext",
    "tcp", "udp", "icmp", "any", "sealed", "never", "reachable", "sev-snp", "tdx", "none",
    "{", "}", ";", ":", ",", "!", "->", "-", ".", "#", "\n", " ", '"', '"p"',
    "a", "b", "lab", "x.y", "0", "7", "65535", "70000", "198.18.1.0/24", "1.2.3.4", "999.1.1.1/40",
]


def check_clean(text: str) -> None:
    policy, diagnostics = compile_text(text, "fuzz.policy")
    lines = text.split("\n")
    for d in diagnostics:
        assert CODE.match(d.code), d.code
        assert d.message and "\n" not in d.message
        assert 1 <= d.span.line <= len(lines) + 1, (d.span, len(lines))
        assert d.span.column >= 1 and d.span.end_line >= d.span.line
    assert (policy is None) == any(d.severity is Severity.ERROR for d in diagnostics)
    render_all(diagnostics, lambda _f: text)


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)


@fuzz(3500)
@given(st.text(max_size=120))
def test_random_text(text: str) -> None:
    check_clean(text)


def soup(indices: bytes) -> str:
    """Bytes as token choices: cheap for hypothesis to generate and to shrink."""
    return " ".join(VOCABULARY[b % len(VOCABULARY)] for b in indices)


@fuzz(5000)
@given(st.binary(max_size=40))
def test_token_soup(indices: bytes) -> None:
    check_clean(soup(indices))


@fuzz(1500)
@given(st.sampled_from(EXAMPLES), st.randoms(use_true_random=False))
def test_mutated_examples(example: str, rnd) -> None:
    text = example
    for _ in range(rnd.randint(1, 4)):
        pos = rnd.randint(0, len(text))
        op = rnd.choice(["delete", "insert", "swap"])
        if op == "delete":
            text = text[:pos] + text[min(len(text), pos + rnd.randint(0, 12)):]
        elif op == "insert":
            text = text[:pos] + rnd.choice(VOCABULARY) + text[pos:]
        else:
            text = text[:pos] + chr(rnd.randint(0, 0x2FF)) + text[pos + 1:]
    check_clean(text)


@fuzz(500)
@given(st.binary(max_size=200))
def test_binary_decoded_leniently(blob: bytes) -> None:
    check_clean(blob.decode("utf-8", errors="replace"))


@pytest.mark.long
@fuzz(200_000)
@given(st.binary(max_size=80))
def test_token_soup_long(indices: bytes) -> None:
    check_clean(soup(indices))
