"""`policyc diff OLD NEW`: every class of packets whose decision changes.

Exit 0 when the policies decide every packet alike, 1 when they differ (as
diff(1) does), 2 when either policy has errors or on usage errors.
"""

from __future__ import annotations

import argparse
import json
import sys

from sealnet.compiler.commands._common import FORMATS, load, print_diagnostics


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("diff", help="show the packets whose decision differs between two policies")
    parser.add_argument("old", metavar="OLD")
    parser.add_argument("new", metavar="NEW")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sealnet.compiler.diagnostics import Diagnostic, Severity
    from sealnet.compiler.diff import diff
    from sealnet.compiler.ir import Span

    old, new = load(args.old), load(args.new)
    if old.policy is None or new.policy is None:
        print_diagnostics([item for item in (old, new) if item.policy is None], "text")
        return 2
    result = diff(old.policy, new.policy)
    if args.format == "json":
        print(json.dumps({"equivalent": result.equivalent, "truncated": result.truncated,
                          "differences": [d.to_json() for d in result.differences]}, indent=2))
    elif args.format == "sarif":
        from sealnet.compiler.sarif import to_sarif

        diags = [Diagnostic(Severity.WARNING, "V320",
                            f"decision changes from {d.old_action.value} (`{d.old_rule}`) to "
                            f"{d.new_action.value} (`{d.new_rule}`), e.g. {d.witness}",
                            Span(args.new, d.new_line or 1, 1, d.new_line or 1, 2))
                 for d in result.differences]
        print(json.dumps(to_sarif(diags), indent=2))
    else:
        for d in result.differences:
            print(f"{d.witness}\n    old: {d.old_action.value:5} by `{d.old_rule}`"
                  + (f" ({args.old}:{d.old_line})" if d.old_line else "")
                  + f"\n    new: {d.new_action.value:5} by `{d.new_rule}`"
                  + (f" ({args.new}:{d.new_line})" if d.new_line else ""))
        if result.truncated:
            print("(more differences exist: the search was bounded per address region)")
        print("equivalent" if result.equivalent else f"{len(result.differences)} region(s) decided differently",
              file=sys.stdout)
    return 0 if result.equivalent else 1
