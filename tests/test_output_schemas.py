"""The JSON outputs of lint, verify, diff and explain against their schemas (docs/schemas/),
on clean, failing, undecided, broken and unreadable inputs; and the same exit code for the same situation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from policies import DOMAINS, HEADER

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "docs" / "schemas"


def validator(command: str) -> Draft202012Validator:
    resources = [(s["$id"], Resource.from_contents(s)) for s in
                 (json.loads(p.read_text()) for p in SCHEMAS.glob("*.schema.json"))]
    schema = json.loads((SCHEMAS / f"{command}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, registry=Registry().with_resources(resources), format_checker=FormatChecker())


def policyc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealnet.compiler.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("schemas")
    texts = {
        "clean": (ROOT / "examples" / "genomics.policy").read_text(),
        "failing": HEADER + DOMAINS + ("workflow w { s: a port 10\n t: b port 20\n s -> t tcp }\n"
                                       "rule wide: deny from a to b\nrule x: seal tcp from a to b port 20\n"
                                       "rule y: allow plaintext udp from a to c\n"
                                       "assert never from a to c\nassert reachable from a to b\n"),
        "broken": "policy x\n",
    }
    paths = {}
    for name, text in texts.items():
        (d / f"{name}.policy").write_text(text)
        paths[name] = str(d / f"{name}.policy")
    (d / "latin1.policy").write_bytes(b'policy "caf\xe9" version 1\n')
    paths["unreadable"] = str(d / "latin1.policy")
    paths["missing"] = str(d / "missing.policy")
    return paths


CASES = [  # command, file, extra arguments, expected exit code, expected status
    ("lint", "clean", [], 0, "ok"),
    ("lint", "failing", [], 1, "error"),
    ("lint", "failing", ["--cube-budget", "0", "--budget", "0.000001"], 1, "error"),
    ("lint", "clean", ["--cube-budget", "0", "--budget", "0.000001"], 3, "unknown"),
    ("lint", "broken", [], 1, "error"),
    ("lint", "unreadable", [], 2, "error"),
    ("lint", "missing", [], 2, "error"),
    ("verify", "clean", [], 0, "proved"),
    ("verify", "failing", [], 1, "refuted"),
    ("verify", "clean", ["--cube-budget", "0", "--budget", "0.000001"], 3, "unknown"),
    ("verify", "broken", [], 1, "error"),
    ("verify", "unreadable", [], 2, "error"),
    ("verify", "missing", [], 2, "error"),
    ("explain", "clean", [], 0, "ok"),
    ("explain", "broken", [], 1, "error"),
    ("explain", "unreadable", [], 2, "error"),
]


@pytest.mark.parametrize("command,name,extra,code,status", CASES)
def test_json_output_follows_its_schema(files, command, name, extra, code, status) -> None:
    proc = policyc(command, "--format", "json", *extra, files[name])
    assert proc.returncode == code, (proc.stdout[-800:], proc.stderr[-800:])
    data = json.loads(proc.stdout)
    validator(command).validate(data)
    assert data["status"] == status
    if name in ("broken", "unreadable", "missing"):
        assert data["diagnostics"] and data["diagnostics"][0]["severity"] == "error"
    if name == "unreadable":
        assert data["diagnostics"][0]["code"] == "E003" and data["diagnostics"][0]["line"] == 1


@pytest.mark.parametrize("old,new,extra,code,status", [
    ("clean", "clean", [], 0, "equivalent"),
    ("clean", "failing", [], 0, "different"),
    ("clean", "failing", ["--exit-code"], 1, "different"),
    ("clean", "broken", [], 1, "error"),
    ("clean", "unreadable", [], 2, "error"),
    ("missing", "clean", [], 2, "error"),
])
def test_diff_json_follows_its_schema(files, old, new, extra, code, status) -> None:
    proc = policyc("diff", "--format", "json", *extra, files[old], files[new])
    assert proc.returncode == code, (proc.stdout[-800:], proc.stderr[-800:])
    data = json.loads(proc.stdout)
    validator("diff").validate(data)
    assert data["status"] == status
    if status == "different":
        assert data["summary"]["regions"] == sum(g["count"] for g in data["changes"]) > 0


def test_every_command_lists_its_exit_codes() -> None:
    for command in ("lint", "verify", "diff", "explain", "compile"):
        out = policyc(command, "--help").stdout
        assert "exit codes:" in out and "3    unknown" in out and "130  interrupted" in out, command


def test_markdown_and_text_plans(files) -> None:
    md = policyc("diff", "--format", "markdown", files["clean"], files["failing"])
    assert md.returncode == 0 and md.stdout.startswith("### Policy diff") and "| source | destination |" in md.stdout
    text = policyc("diff", files["clean"], files["failing"])
    assert "\x1b[" not in text.stdout  # no colour when not on a terminal
    assert "group(s) decided differently" in text.stdout
