"""`policyc diff OLD NEW`: the plan of a policy change.

The packets whose decision changes, as regions of ranges (source,
destination, protocol, destination port) grouped by domain pair and by
(old action -> new action), with counts and a witness each. Formats: text
(coloured on a terminal only), json (docs/schemas/diff.schema.json),
markdown (for a review comment), sarif.

Exit codes as every command (commands/_common.py); like `git diff`, a
difference exits 0 unless --exit-code is given (then 1). 1 also when a
policy has errors; 2 usage or an unreadable file; 3 something undecided
(and no difference found); 130 interrupted.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

from sealnet.compiler.commands._common import (EXIT_CODES_HELP, HELP_FORMATTER, EXIT_FINDINGS, EXIT_OK, EXIT_UNKNOWN,
                                               add_budget_arguments, budget_of, exit_code, load_all,
                                               print_diagnostics)

DIFF_FORMATS = ("text", "json", "markdown", "sarif")
REGIONS_SHOWN = 20  # per group, in text and markdown; JSON lists them all


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("diff", help="show the packets whose decision differs between two policies",
                            epilog=EXIT_CODES_HELP,
                            formatter_class=HELP_FORMATTER)
    parser.add_argument("old", metavar="OLD")
    parser.add_argument("new", metavar="NEW")
    parser.add_argument("--format", choices=DIFF_FORMATS, default="text")
    parser.add_argument("--exit-code", action="store_true", help="exit 1 when the policies differ (as git diff)")
    add_budget_arguments(parser)
    parser.set_defaults(func=run)


def _unusable(items, fmt: str) -> int:
    broken = [item for item in items if item.policy is None]
    if fmt == "json":
        print(json.dumps({"status": "error", "old": items[0].path, "new": items[1].path,
                          "diagnostics": [d.to_json() for item in broken for d in item.all_diagnostics()],
                          "summary": {"regions": 0, "packets": 0, "groups": 0},
                          "changes": [], "differences": [], "unknown": [], "truncated": False}, indent=2))
        for item in broken:
            if item.error:
                print(f"policyc: error: {item.error}", file=sys.stderr)
    else:
        print_diagnostics(broken, "text" if fmt == "markdown" else fmt)
    return exit_code(errors=True, unreadable=any(item.error for item in broken))


def _pair(group) -> str:
    return f"{group.src_domain or '(no domain)'} -> {group.dst_domain or '(no domain)'}"


@functools.lru_cache(maxsize=4096)
def _addresses(intervals) -> str:
    """addresses_text, once per address set: a plan repeats a few sets (a domain, the gaps) in many regions."""
    from sealnet.compiler.explain import addresses_text

    return addresses_text(intervals)


def _cells(region) -> list[str]:
    from sealnet.compiler.explain import ports_text, protocols_text

    return [_addresses(region.cube.src), _addresses(region.cube.dst), protocols_text(region.cube.proto),
            ports_text(region.cube.dport)]


def _text(result, args, color: bool) -> str:
    from sealnet.compiler.output import paint

    style = {"deny": ("red",), "allow": ("yellow",), "seal": ("green",)}
    out = []
    for group in result.groups():
        change = (f"{paint(group.old_action.value, *style[group.old_action.value], enabled=color)} -> "
                  f"{paint(group.new_action.value, *style[group.new_action.value], enabled=color)}")
        out.append(f"{paint(_pair(group), 'bold', enabled=color)}: {change}  "
                   f"({len(group.regions)} region{'s' if len(group.regions) != 1 else ''}, {group.packets} packets)")
        for region in group.regions[:REGIONS_SHOWN]:
            src, dst, proto, ports = _cells(region)
            exact = "" if region.exact else "  (one packet found by the solver)"
            out.append(f"  {src} -> {dst} {proto} port {ports}: `{region.old_rule}` -> `{region.new_rule}`"
                       f"  e.g. {region.witness}{exact}")
        if len(group.regions) > REGIONS_SHOWN:
            out.append(f"  ... and {len(group.regions) - REGIONS_SHOWN} more regions (--format json lists all)")
    for reason in result.unknown:
        out.append(f"{paint('unknown', 'magenta', 'bold', enabled=color)} {reason}")
    if result.truncated:
        out.append("(more differences may exist: the solver's search was bounded per address region)")
    summary = {"equivalent": "equivalent: every packet is decided alike",
               "different": f"{len(result.regions)} region(s) in {len(result.groups())} group(s) decided differently",
               "unknown": "unknown: some address regions could not be compared (see above)"}[result.status]
    out.append(summary)
    return "\n".join(out)


def _markdown(result, args) -> str:
    out = [f"### Policy diff: `{args.old}` → `{args.new}`", ""]
    if result.status == "equivalent":
        out.append("No packet changes its decision.")
    for group in result.groups():
        out.append(f"#### {_pair(group)}: {group.old_action.value} → {group.new_action.value} "
                   f"({len(group.regions)} region{'s' if len(group.regions) != 1 else ''}, {group.packets} packets)")
        out += ["", "| source | destination | protocol | port | old rule | new rule | example |",
                "|---|---|---|---|---|---|---|"]
        for region in group.regions[:REGIONS_SHOWN]:
            cells = _cells(region) + [f"`{region.old_rule}`", f"`{region.new_rule}`", f"`{region.witness}`"]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        if len(group.regions) > REGIONS_SHOWN:
            out.append(f"\n… and {len(group.regions) - REGIONS_SHOWN} more regions.")
        out.append("")
    for reason in result.unknown:
        out.append(f"- **unknown**: {reason}")
    return "\n".join(out).rstrip() + "\n"


def run(args: argparse.Namespace) -> int:
    from sealnet.compiler.diagnostics import Diagnostic, Severity
    from sealnet.compiler.diff import diff
    from sealnet.compiler.ir import Span
    from sealnet.compiler.output import use_color

    old, new = load_all([args.old, args.new])
    if old.policy is None or new.policy is None:
        return _unusable([old, new], args.format)
    result = diff(old.policy, new.policy, budget=budget_of(args))
    if args.format == "json":
        groups = result.groups()
        print(json.dumps({"status": result.status, "old": args.old, "new": args.new,
                          "diagnostics": [d.to_json() for d in old.diagnostics + new.diagnostics],
                          "summary": {"regions": len(result.regions),
                                      "packets": sum(r.packets for r in result.regions), "groups": len(groups)},
                          "changes": [g.to_json() for g in groups],
                          "differences": [d.to_json() for d in result.differences],
                          "unknown": result.unknown, "truncated": result.truncated}, indent=2))
    elif args.format == "markdown":
        print(_markdown(result, args), end="")
    elif args.format == "sarif":
        from sealnet.compiler.codes import DECISION_CHANGED
        from sealnet.compiler.sarif import to_sarif

        diags = [Diagnostic(Severity.WARNING, DECISION_CHANGED,
                            f"decision changes from {d.old_action.value} (`{d.old_rule}`) to "
                            f"{d.new_action.value} (`{d.new_rule}`), e.g. {d.witness}",
                            Span(args.new, d.new_line or 1, 1, d.new_line or 1, 2))
                 for d in result.differences]
        print(json.dumps(to_sarif(diags), indent=2))
    else:
        print(_text(result, args, use_color(sys.stdout)))
    if result.status == "different":
        return EXIT_FINDINGS if args.exit_code else EXIT_OK
    return EXIT_UNKNOWN if result.status == "unknown" else EXIT_OK
