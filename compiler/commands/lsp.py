"""`policyc lsp`: run the language server on stdin/stdout."""

from __future__ import annotations

import argparse

from sealnet.contracts.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("lsp", help="run the language server (stdio) for editors")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        from sealnet.compiler.lsp import serve_stdio
    except ImportError as exc:
        raise UserError(f"the language server needs pygls: pip install 'sealnet[lsp]' ({exc})") from None
    serve_stdio()
    return 0
