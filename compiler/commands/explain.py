"""`policyc explain FILE`: the checked policy as tables.

Exit codes as every command (commands/_common.py): 0 shown, 1 the policy
has errors (its diagnostics are shown instead, in the format asked for),
2 usage or an unreadable file.
"""

from __future__ import annotations

import argparse
import json

from sealnet.compiler.commands._common import EXIT_CODES_HELP, HELP_FORMATTER, exit_code, load, print_diagnostics


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain", help="show a checked policy as readable tables", epilog=EXIT_CODES_HELP,
                            formatter_class=HELP_FORMATTER)
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sealnet.compiler.explain import explain_json, explain_text

    item = load(args.file)
    if item.policy is None:
        print_diagnostics([item], args.format)
        return exit_code(errors=True, unreadable=bool(item.error))
    if args.format == "json":
        print(json.dumps({"status": "ok", "diagnostics": [d.to_json() for d in item.diagnostics],
                          **explain_json(item.policy)}, indent=2))
    else:
        print(explain_text(item.policy))
    return exit_code()
