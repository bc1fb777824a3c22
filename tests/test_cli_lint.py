"""`policyc lint`, `fmt` and `explain` as a user runs them: exit codes and output formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sealnet.compiler.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(str(p) for p in (ROOT / "examples").glob("*.policy"))
GOLDEN = ROOT / "tests" / "golden"


def test_examples_lint_clean(capsys) -> None:
    assert main(["lint", *EXAMPLES]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"{len(EXAMPLES)} files checked: 0 errors, 0 warnings")


def test_lint_exit_codes(capsys) -> None:
    assert main(["lint", "--no-verify", str(GOLDEN / "warnings.policy")]) == 0
    assert main(["lint", "--no-verify", str(GOLDEN / "semantic.policy")]) == 1
    with pytest.raises(SystemExit) as exc:
        main(["lint", "--format", "xml", str(GOLDEN / "semantic.policy")])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["lint"])
    assert exc.value.code == 2


def test_lint_json_schema(capsys) -> None:
    assert main(["lint", "--no-verify", "--format", "json", str(GOLDEN / "syntax.policy")]) == 1
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"status", "diagnostics"} and data["status"] == "error"
    first = data["diagnostics"][0]
    assert set(first) == {"file", "line", "column", "end_line", "end_column", "severity", "code", "message"}
    assert (first["line"], first["column"], first["severity"], first["code"]) == (3, 9, "error", "E001")


def test_lint_sarif_shape(capsys) -> None:
    main(["lint", "--no-verify", "--format", "sarif", str(GOLDEN / "semantic.policy"), str(GOLDEN / "warnings.policy")])
    sarif = json.loads(capsys.readouterr().out)
    assert sarif["version"] == "2.1.0" and "sarif" in sarif["$schema"]
    (run,) = sarif["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert run["tool"]["driver"]["name"] == "policyc"
    ids = [r["id"] for r in rules]
    assert ids == sorted(set(ids))
    assert {r["level"] for r in run["results"]} == {"error", "warning"}
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert (region["endLine"], region["endColumn"]) >= (region["startLine"], region["startColumn"])


def test_lint_unreadable_files_are_one_line_errors(tmp_path, capsys) -> None:
    bad = tmp_path / "latin1.policy"
    bad.write_bytes(b'policy "caf\xe9" version 1\n')
    assert main(["lint", "--no-verify", str(tmp_path), str(tmp_path / "missing.policy"), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"policyc: error: {tmp_path}: is a directory, not a policy file",
        f"policyc: error: {tmp_path / 'missing.policy'}: no such file",
        f"policyc: error: {bad}:1:12: not valid UTF-8 (byte 0xe9)",
    ]


def test_fmt_check_and_rewrite(tmp_path, capsys) -> None:
    assert main(["fmt", "--check", *EXAMPLES]) == 0
    messy = tmp_path / "messy.policy"
    messy.write_text('policy p version 1\ndomain a {tee tdx;nodes 198.18.1.0/24}\nrule r:deny from a to a # why\n')
    assert main(["fmt", "--check", str(messy)]) == 1
    assert "would reformat" in capsys.readouterr().out
    assert messy.read_text().startswith("policy p")  # --check changes nothing
    assert main(["fmt", str(messy)]) == 0
    assert messy.read_text() == (
        'policy "p" version 1\n\ndomain a { tee tdx; nodes 198.18.1.0/24 }\nrule r: deny from a to a  # why\n')
    assert main(["fmt", "--check", str(messy)]) == 0


def test_fmt_leaves_broken_files_alone(tmp_path, capsys) -> None:
    broken = tmp_path / "broken.policy"
    text = "policy p version 1\nrule r deny from a to a\n"
    broken.write_text(text)
    assert main(["fmt", str(broken)]) == 1
    assert broken.read_text() == text
    assert "error[E001]" in capsys.readouterr().out


def test_explain_tables(capsys) -> None:
    assert main(["explain", str(ROOT / "examples" / "genomics.policy")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "to_align" in line)
    assert row.split() == ["1", "to_align", "seal", "198.18.1.0/24", "198.18.2.0/24", "tcp", "7001"]
    assert main(["explain", "--format", "json", str(ROOT / "examples" / "genomics.policy")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["domains"]] == ["hospital", "lab", "public"]
    assert data["rules"][0]["expansion"] == [
        {"src": "198.18.1.0/24", "dst": "198.18.2.0/24", "proto": "tcp", "dport": "7001"}]


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "sealnet.compiler.cli", "lint", "--no-verify", *EXAMPLES],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
