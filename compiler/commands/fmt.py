"""`policyc fmt FILE... [--check]`: rewrite policies in the canonical layout.

A file with syntax errors is never touched; its diagnostics are printed.
Exit 0 when every file is (or now is) formatted, 1 when `--check` finds a
file that would change or a file cannot be formatted.
"""

from __future__ import annotations

import argparse
import os
import sys

from sealnet.contracts.errors import UserError
from sealnet.compiler.formatter import FormatError, format_text
from sealnet.compiler.output import read_source, use_color, write_atomically
from sealnet.compiler.render import render_all


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("fmt", help="format policies in the canonical layout")
    parser.add_argument("files", nargs="+", metavar="FILE")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            source = read_source(path)
        except UserError as exc:
            print(f"policyc: error: {exc}", file=sys.stderr)
            status = 1
            continue
        try:
            formatted = format_text(source, path)
        except FormatError as exc:
            print(render_all(exc.diagnostics, lambda _f: source, use_color(sys.stdout)))
            print(f"{path}: not formatted: it has syntax errors", file=sys.stderr)
            status = 1
            continue
        if formatted == source:
            continue
        if args.check:
            print(f"would reformat {path}")
            status = 1
        else:
            write_atomically(path, formatted.encode("utf-8"), os.stat(path).st_mode & 0o7777)
            print(f"reformatted {path}")
    return status
