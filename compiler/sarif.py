"""SARIF 2.1.0 output, so code-scanning tools show findings in place."""

from __future__ import annotations

from typing import Any, Iterable

from sealnet.compiler.diagnostics import Diagnostic, Severity

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SARIF_VERSION = "2.1.0"
_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def _region(span) -> dict[str, int]:
    return {
        "startLine": span.line,
        "startColumn": span.column,
        "endLine": span.end_line,
        "endColumn": max(span.end_column, span.column + 1) if span.end_line == span.line else span.end_column,
    }


def _location(span, message: str | None = None) -> dict[str, Any]:
    loc: dict[str, Any] = {
        "physicalLocation": {"artifactLocation": {"uri": span.file}, "region": _region(span)}
    }
    if message:
        loc["message"] = {"text": message}
    return loc


def to_sarif(diagnostics: Iterable[Diagnostic], tool_name: str = "policyc",
             rule_help: dict[str, str] | None = None) -> dict[str, Any]:
    diagnostics = list(diagnostics)
    codes = sorted({d.code for d in diagnostics})
    rule_help = rule_help or {}
    rules = [
        {"id": code, "shortDescription": {"text": rule_help.get(code, code)}}
        for code in codes
    ]
    index = {code: i for i, code in enumerate(codes)}
    results = []
    for d in diagnostics:
        text = d.message if not d.hint else f"{d.message} (hint: {d.hint})"
        result: dict[str, Any] = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": _LEVEL[d.severity],
            "message": {"text": text},
            "locations": [_location(d.span)],
        }
        if d.notes:
            result["relatedLocations"] = [
                {"id": i, **_location(n.span, n.message)} for i, n in enumerate(d.notes)
            ]
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [{
            "tool": {"driver": {"name": tool_name, "version": "0.1.0",
                                "rules": rules}},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    }
