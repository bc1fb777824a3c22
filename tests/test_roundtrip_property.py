"""Generated policies survive `fmt` and re-parse to the same IR."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from sealnet.compiler.formatter import format_text
from sealnet.compiler.frontend import compile_text
from policies import semantic_key
from strategies import policies


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_fmt_round_trip_keeps_the_ir(text: str) -> None:
    before, diagnostics = compile_text(text, "gen.policy")
    assert before is not None, [d.message for d in diagnostics]
    formatted = format_text(text, "gen.policy")
    after, _ = compile_text(formatted, "gen.policy")
    assert after is not None
    assert semantic_key(after) == semantic_key(before)
    assert format_text(formatted, "gen.policy") == formatted
