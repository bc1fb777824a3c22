"""`policyc lint FILE...`: syntax, semantic checks and the verifier's findings.

Exit 0 when no file has an error (warnings allowed), 1 otherwise, 2 usage.
"""

from __future__ import annotations

import argparse

from sealnet.compiler.commands._common import FORMATS, has_errors, load, print_diagnostics


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lint", help="check policies and report diagnostics")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the Z3 verifier (syntax and semantic checks only)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = [load(path) for path in args.files]
    if not args.no_verify:
        from sealnet.compiler.verify import findings_to_diagnostics, verify

        for item in loaded:
            if item.policy is not None:
                item.diagnostics.extend(findings_to_diagnostics(verify(item.policy).findings))
    print_diagnostics(loaded, args.format)
    failed = any(item.error for item in loaded) or any(has_errors(item.diagnostics) for item in loaded)
    return 1 if failed else 0
