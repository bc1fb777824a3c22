"""`policyc lint FILE...`: syntax, semantic checks and the verifier's findings.

Exit codes as every command (commands/_common.py): 0 no error (warnings
allowed), 1 an error in some file, 2 usage or an unreadable file, 3 the
verifier could not decide something (V330), 130 interrupted.
"""

from __future__ import annotations

import argparse

from sealnet.compiler.commands._common import (EXIT_CODES_HELP, HELP_FORMATTER, FORMATS, add_budget_arguments, budget_of,
                                               exit_code, has_errors, load, print_diagnostics)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lint", help="check policies and report diagnostics", epilog=EXIT_CODES_HELP,
                            formatter_class=HELP_FORMATTER)
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the Z3 verifier (syntax and semantic checks only)")
    add_budget_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = [load(path) for path in args.files]
    unknown = False
    if not args.no_verify:
        from sealnet.compiler.verify import findings_to_diagnostics, verify

        for item in loaded:
            if item.policy is not None:
                report = verify(item.policy, budget=budget_of(args))
                item.diagnostics.extend(findings_to_diagnostics(report.findings))
                item.diagnostics.extend(o.to_diagnostic() for o in report.unknown)
                unknown = unknown or bool(report.unknown)
    from sealnet.compiler.codes import UNDECIDED as UNDECIDED_CODE  # as findings.py names it, without Z3

    errors = any(has_errors([d for d in item.diagnostics if d.code != UNDECIDED_CODE]) for item in loaded)
    unreadable = any(item.error for item in loaded)
    status = "error" if errors or unreadable else "unknown" if unknown else "ok"
    print_diagnostics(loaded, args.format, status)
    return exit_code(errors=errors, unknown=unknown, unreadable=unreadable)
