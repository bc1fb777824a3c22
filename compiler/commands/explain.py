"""`policyc explain FILE`: the checked policy as tables."""

from __future__ import annotations

import argparse
import json

from sealnet.compiler.commands._common import load, print_diagnostics


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("explain", help="show a checked policy as readable tables")
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sealnet.compiler.explain import explain_json, explain_text

    item = load(args.file)
    if item.policy is None:
        print_diagnostics([item], "text")
        return 1
    if args.format == "json":
        print(json.dumps(explain_json(item.policy), indent=2))
    else:
        print(explain_text(item.policy))
    return 0
