"""The VS Code extension's static files, checked without npm: manifest, grammar, language configuration.

The grammar is run by a small TextMate-style tokenizer (at each position the
pattern whose match starts first wins, ties to the earlier pattern) over the
example policies, and its keywords are checked against the language's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sealnet.compiler.checker import RESERVED
from sealnet.compiler.ir import TeeKind
from sealnet.compiler.parser import STATEMENT_KEYWORDS
from sealnet.contracts.manifest import CIPHER_SUITES

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "editors" / "vscode"
EXAMPLES = sorted((ROOT / "examples").glob("*.policy"))


def load(name: str) -> dict:
    return json.loads((EXTENSION / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def manifest() -> dict:
    return load("package.json")


@pytest.fixture(scope="module")
def grammar() -> dict:
    return load("syntaxes/sealnet.tmLanguage.json")


def test_manifest_names_files_that_exist_and_one_build_command(manifest: dict) -> None:
    assert (EXTENSION / manifest["main"]).is_file()
    (language,) = manifest["contributes"]["languages"]
    assert language["extensions"] == [".policy"]
    assert (EXTENSION / language["configuration"]).is_file()
    (grammar_entry,) = manifest["contributes"]["grammars"]
    assert grammar_entry["language"] == language["id"]
    assert (EXTENSION / grammar_entry["path"]).is_file()
    assert f"onLanguage:{language['id']}" in manifest["activationEvents"]
    assert "vsce package" in manifest["scripts"]["package"]
    assert "vscode-languageclient" in manifest["dependencies"]
    assert manifest["contributes"]["configuration"]["properties"]["sealnet.server.args"]["default"] == ["lsp"]
    client = (EXTENSION / manifest["main"]).read_text(encoding="utf-8")
    assert "sealnet.server.command" in client.replace('"server.command"', '"sealnet.server.command"')
    assert "TransportKind.stdio" in client
    assert (EXTENSION / "README.md").is_file()
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").split()
    assert "editors/vscode/node_modules/" in ignored and "*.vsix" in ignored


def test_language_configuration(manifest: dict) -> None:
    config = load("language-configuration.json")
    assert config["comments"]["lineComment"] == "#"
    word = re.compile(config["wordPattern"])
    for text in ("sev-snp", "genomics", "198.18.1.0/24", "7001"):
        assert word.fullmatch(text), text
    for key in ("increaseIndentPattern", "decreaseIndentPattern"):
        re.compile(config["indentationRules"][key])


# -- the grammar ------------------------------------------------------------------------------------
def _patterns(grammar: dict, node: dict) -> list[dict]:
    """Flatten includes and nested pattern lists into (match, scopes) leaves, in order."""
    out = []
    for pattern in node.get("patterns", [node] if "match" in node else []):
        if "include" in pattern:
            out += _patterns(grammar, grammar["repository"][pattern["include"].lstrip("#")])
        elif "patterns" in pattern:
            out += _patterns(grammar, pattern)
        else:
            out.append(pattern)
    return out


def tokenize(grammar: dict, line: str) -> list[tuple[str, str]]:
    """(text, scope) of each token of one line; text no pattern matches is skipped."""
    leaves = [(re.compile(p["match"]), p) for p in _patterns(grammar, grammar)]
    tokens, pos = [], 0
    while pos < len(line):
        best = None
        for regex, pattern in leaves:
            m = regex.search(line, pos)
            if m and m.end() > m.start() and (best is None or m.start() < best[0].start()):
                best = (m, pattern)
        if best is None:
            break
        m, pattern = best
        if "captures" in pattern:
            for group, capture in sorted(pattern["captures"].items(), key=lambda kv: int(kv[0])):
                if m.group(int(group)):
                    tokens.append((m.group(int(group)), capture["name"]))
        else:
            tokens.append((m.group(), pattern["name"]))
        pos = m.end()
    return tokens


def test_grammar_is_valid(grammar: dict, manifest: dict) -> None:
    assert grammar["scopeName"] == manifest["contributes"]["grammars"][0]["scopeName"]
    leaves = _patterns(grammar, grammar)
    assert len(leaves) > 10
    for pattern in leaves:
        re.compile(pattern["match"])  # the subset used reads the same in Oniguruma and Python
        assert "name" in pattern or "captures" in pattern
        for scope in [pattern.get("name")] + [c["name"] for c in pattern.get("captures", {}).values()]:
            if scope:
                assert scope.endswith(".sealnet"), scope


def test_every_keyword_is_highlighted_as_one(grammar: dict) -> None:
    for word in sorted(RESERVED | set(CIPHER_SUITES) | {t.value for t in TeeKind}):
        ((text, scope),) = tokenize(grammar, word)
        assert text == word and not scope.startswith("variable"), (word, scope)
    for word in STATEMENT_KEYWORDS:
        assert tokenize(grammar, word) == [(word, "keyword.other.statement.sealnet")]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_highlight_names_by_role(grammar: dict, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    scopes: dict[str, set[str]] = {}
    for line in text.splitlines():
        for token, scope in tokenize(grammar, line):
            scopes.setdefault(token, set()).add(scope)
    for rule in re.findall(r"^\s*rule\s+([\w-]+)", text, re.MULTILINE):
        assert "entity.name.function.rule.sealnet" in scopes[rule]
    for domain in re.findall(r"^\s*domain\s+([\w-]+)", text, re.MULTILINE):
        assert "entity.name.type.sealnet" in scopes[domain]
    for cidr in re.findall(r"\b\d+\.\d+\.\d+\.\d+/\d+\b", text):
        assert scopes[cidr] == {"constant.numeric.address.sealnet"}
    comments = [t for t, s in scopes.items() if "comment.line.number-sign.sealnet" in s]
    assert all(c.startswith("#") for c in comments) and (not any("#" in ln for ln in text.splitlines()) or comments)
