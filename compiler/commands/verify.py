"""`policyc verify FILE`: anomalies, assertions, workflow and least-privilege checks.

Exit 1 when an assertion fails or a workflow flow is blocked (errors), or
with --strict on any finding; 0 otherwise; 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys

from sealnet.compiler.commands._common import FORMATS, load, print_diagnostics


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("verify", help="prove assertions and find anomalies with Z3")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sealnet.compiler.findings import findings_to_diagnostics
    from sealnet.compiler.output import paint, use_color
    from sealnet.compiler.verify import verify

    item = load(args.file)
    if item.policy is None:
        print_diagnostics([item], args.format if args.format != "json" else "json")
        return 1
    report = verify(item.policy)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=2))
    elif args.format == "sarif":
        from sealnet.compiler.sarif import to_sarif

        print(json.dumps(to_sarif(findings_to_diagnostics(report.findings)), indent=2))
    else:
        color = use_color(sys.stdout)
        item.diagnostics = [d for d in item.diagnostics] + findings_to_diagnostics(report.findings)
        if report.findings or item.diagnostics:
            print_diagnostics([item], "text")
        for p in report.proved:
            print(f"{paint('proved', 'green', 'bold', enabled=color)} {p.span.file}:{p.span.line}: {p.kind}: {p.text}")
        errors = sum(1 for f in report.findings if f.severity.value == "error")
        print(f"{len(report.proved)} proved, {errors} failed, {len(report.findings) - errors} warnings")
    if report.has_errors:
        return 1
    return 1 if args.strict and report.findings else 0
