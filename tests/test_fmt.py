"""The formatter: canonical, idempotent, and it keeps every comment."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealnet.compiler.formatter import FormatError, format_text
from sealnet.compiler.frontend import compile_text
from sealnet.compiler.parser import parse
from policies import semantic_key

ROOT = Path(__file__).resolve().parent.parent

COMMENTED = """# Genomics pipeline
policy genomics version 3   # header comment
domain hospital { tee sev-snp; nodes 198.18.1.0/24 }
domain lab { tee tdx
   nodes 198.18.2.0/24 }


domain public {  # the internet-facing one
  tee none   # no TEE
  # its nodes
  nodes 198.18.9.0/24
  # closing
}
workflow genomics {
  ingest: hospital port 7000
  # align stage
  align:  lab      port {7001, 7100-7200}
  ingest -> align tcp   # the flow
}
rule to_align:   seal  tcp from hospital to lab port 7001
rule lab_local:  allow from lab to lab
   # before default
default deny
assert sealed from hospital to !hospital
# end
"""


def _comment_texts(text: str) -> list[str]:
    tree, _ = parse(text, "f")
    return [c.text for c in tree.comments]


def test_comments_kept_in_order_and_idempotent() -> None:
    once = format_text(COMMENTED)
    assert _comment_texts(once) == _comment_texts(COMMENTED)
    assert format_text(once) == once
    assert "domain public {  # the internet-facing one\n  tee none  # no TEE\n  # its nodes\n" in once
    assert "ingest -> align tcp  # the flow" in once
    assert once.endswith("\n# end\n")


def test_format_preserves_meaning() -> None:
    before, _ = compile_text(COMMENTED, "f")
    after, _ = compile_text(format_text(COMMENTED), "f")
    assert semantic_key(before) == semantic_key(after)


def test_alignment_of_rules_and_domains() -> None:
    text = ('policy "p" version 1\ndomain hospital { tee sev-snp; nodes 198.18.1.0/24 }\n'
            "domain lab { tee tdx; nodes 198.18.2.0/24 }\n"
            "rule a: seal tcp from hospital to lab\nrule longer_name: allow from lab to lab\n")
    out = format_text(text).splitlines()
    assert out[2:4] == ["domain hospital { tee sev-snp; nodes 198.18.1.0/24 }",
                        "domain lab      { tee tdx;     nodes 198.18.2.0/24 }"]
    assert out[4:6] == ["rule a:           seal  tcp from hospital to lab",
                        "rule longer_name: allow from lab to lab"]


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.policy")), ids=lambda p: p.name)
def test_examples_are_formatted(path: Path) -> None:
    text = path.read_text()
    assert format_text(text, str(path)) == text


def test_syntax_errors_refuse_formatting() -> None:
    with pytest.raises(FormatError) as exc:
        format_text("policy p version\n")
    assert exc.value.diagnostics[0].code == "E001"


def test_empty_file_formats_to_empty() -> None:
    assert format_text("") == ""
    assert format_text("# only a comment\n") == "# only a comment\n"
