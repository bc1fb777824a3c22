"""`policyc compile FILE -o OUT --sign-key KEY`: verify, build, measure, sign.

A policy with errors (syntax, semantic, failed assertions, blocked workflow
flows) builds nothing; with --validate the object must also decide exactly
as the source in the kernel. OUT is written atomically, only on success.
"""

from __future__ import annotations

import argparse
import json
import sys

from sealnet.contracts.errors import UserError
from sealnet.compiler.output import write_atomically
from sealnet.compiler.commands._common import (EXIT_CODES_HELP, HELP_FORMATTER, add_budget_arguments, budget_of, exit_code,
                                               has_errors, load, print_diagnostics)


def register(sub: argparse._SubParsersAction) -> None:
    from sealnet.contracts.manifest import AES_IMPLEMENTATIONS

    parser = sub.add_parser("compile", help="build a measured, signed bundle from a policy", epilog=EXIT_CODES_HELP,
                            formatter_class=HELP_FORMATTER)
    parser.add_argument("file", metavar="FILE")
    parser.add_argument("-o", "--output", required=True, metavar="OUT")
    parser.add_argument("--sign-key", required=True, metavar="KEY", help="the authority's Ed25519 private key (PEM)")
    parser.add_argument("--validate", action="store_true",
                        help="run the object in the kernel against the source semantics (needs root)")
    parser.add_argument("--aes-implementation", choices=AES_IMPLEMENTATIONS, default="aes-fixed-time",
                        help="kernel AES driver of a policy with `cipher aes-ccm`: aes-fixed-time is constant "
                             "time (default); aes-generic is faster and table based (not constant time)")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_budget_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sealnet.compiler.build import compile_c, find_clang
    from sealnet.contracts.bundle import pack
    from sealnet.compiler.codegen import render
    from sealnet.compiler.findings import findings_to_diagnostics
    from sealnet.compiler.manifest import build_manifest
    from sealnet.contracts.manifest import canonical
    from sealnet.contracts.measure import measure
    from sealnet.contracts.signing import load_private
    from sealnet.compiler.tables import TableError, build_tables
    from sealnet.compiler.verify import verify

    key = load_private(args.sign_key)  # a bad key fails before any work
    item = load(args.file)
    if item.policy is None:
        print_diagnostics([item], args.format)
        if not item.error:
            print(f"{args.file}: not compiled: the policy has errors", file=sys.stderr)
        return exit_code(errors=True, unreadable=bool(item.error))
    report = verify(item.policy, budget=budget_of(args))
    item.diagnostics += findings_to_diagnostics(report.findings) + [o.to_diagnostic() for o in report.unknown]
    if has_errors(item.diagnostics):
        print_diagnostics([item], args.format, report.status.value)
        why = "verification failed" if report.has_errors else "verification could not decide everything"
        print(f"{args.file}: not compiled: {why}", file=sys.stderr)
        return exit_code(errors=report.has_errors, unknown=bool(report.unknown))
    try:
        tables = build_tables(item.policy)
    except TableError as exc:
        raise UserError(f"{args.file}: {exc}") from None
    clang = find_clang()
    object_bytes = compile_c(render(item.policy, aes_implementation=args.aes_implementation), clang)
    validation = None
    if args.validate:
        from sealnet.compiler.validate import validate

        validation = validate(item.policy, object_bytes)
        if not validation.ok:
            print(validation.summary(), file=sys.stderr)
            print(f"{args.file}: not written: the compiled object disagrees with the source", file=sys.stderr)
            return 1
    manifest = build_manifest(item.policy, object_bytes, tables, clang_version=clang.version_text,
                              aes_implementation=args.aes_implementation)
    measurement = measure(object_bytes, canonical(manifest))
    data = pack(manifest, object_bytes, key)
    write_atomically(args.output, data)
    if args.format == "json":
        out = {"bundle": args.output, "bytes": len(data), "measurement": measurement,
               "object_bytes": len(object_bytes),
               "warnings": [d.to_json() for d in item.diagnostics]}
        if validation is not None:
            out["validation"] = validation.to_json()
        print(json.dumps(out, indent=2))
    else:
        if item.diagnostics:
            print_diagnostics([item], "text")
        if validation is not None:
            print(validation.summary())
        print(f"wrote {args.output} ({len(data)} bytes)\nmeasurement {measurement}")
    return 0
