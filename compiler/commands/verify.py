"""`policyc verify FILE`: anomalies, assertions, workflow and least-privilege checks.

Every assertion and flow is proved, refuted (with a witness) or unknown
(with the reason). Exit codes as every command (commands/_common.py): 0 all
proved, 1 an error (failed assertion or flow, a policy that does not
compile) or any finding under --strict, 2 usage or an unreadable file,
3 something undecided (never a pass), 130 interrupted (no report).
"""

from __future__ import annotations

import argparse
import json
import sys

from sealnet.compiler.commands._common import (EXIT_CODES_HELP, HELP_FORMATTER, FORMATS, add_budget_arguments, budget_of,
                                               exit_code, load, print_diagnostics)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("verify", help="prove assertions and find anomalies with Z3", epilog=EXIT_CODES_HELP,
                            formatter_class=HELP_FORMATTER)
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    add_budget_arguments(parser)
    parser.set_defaults(func=run)


def _not_verified(item, fmt: str) -> int:
    """A policy that cannot be read or does not compile: its diagnostics, in the format asked for."""
    if fmt == "json":
        print(json.dumps({"status": "error", "diagnostics": [d.to_json() for d in item.all_diagnostics()],
                          "findings": [], "assertions": [], "flows": [], "unknown": []}, indent=2))
        if item.error:
            print(f"policyc: error: {item.error}", file=sys.stderr)
    else:
        print_diagnostics([item], fmt)
    return exit_code(errors=True, unreadable=bool(item.error))


def run(args: argparse.Namespace) -> int:
    from sealnet.compiler.findings import findings_to_diagnostics
    from sealnet.compiler.output import paint, use_color
    from sealnet.compiler.verify import verify

    item = load(args.file)
    if item.policy is None:
        return _not_verified(item, args.format)
    report = verify(item.policy, budget=budget_of(args))
    diagnostics = findings_to_diagnostics(report.findings) + [o.to_diagnostic() for o in report.unknown]
    if args.format == "json":
        print(json.dumps({"diagnostics": [d.to_json() for d in item.diagnostics], **report.to_json()}, indent=2))
    elif args.format == "sarif":
        from sealnet.compiler.sarif import to_sarif

        print(json.dumps(to_sarif(item.diagnostics + diagnostics), indent=2))
    else:
        color = use_color(sys.stdout)
        item.diagnostics = item.diagnostics + diagnostics
        if item.diagnostics:
            print_diagnostics([item], "text")
        for o in report.assertions + report.flows:
            if o.status.value == "proved":
                print(f"{paint('proved', 'green', 'bold', enabled=color)} {o.span.file}:{o.span.line}: "
                      f"{o.kind}: {o.text}")
        for o in report.unknown:
            print(f"{paint('unknown', 'magenta', 'bold', enabled=color)} {o.span.file}:{o.span.line}: "
                  f"{o.kind}: {o.text} ({o.reason})")
        errors = sum(1 for f in report.findings if f.severity.value == "error")
        print(f"{len(report.proved)} proved, {errors} failed, {len(report.unknown)} unknown, "
              f"{len(report.findings) - errors} warnings")
    errors = report.has_errors or (args.strict and bool(report.findings))
    return exit_code(errors=errors, unknown=bool(report.unknown))
