"""`policyc`: the policy toolchain's command line.

Each subcommand lives in `compiler/commands/<name>.py` and exposes
`register(subparsers)`, which adds its parser and sets `func`; a command's
`func(args) -> int` returns the exit code (0 ok, 1 findings or failure,
2 usage). Heavy imports (z3, clang driver) happen inside `func`, so
`policyc --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from sealnet.contracts.errors import UserError

COMMANDS = ("lint", "fmt", "explain", "verify", "diff", "keygen", "compile", "inspect", "lsp")


def register_commands(sub: argparse._SubParsersAction, package: str, names: tuple[str, ...]) -> None:
    """Add each `package.NAME` module's subcommand, in the order given."""
    for name in names:
        importlib.import_module(f"{package}.{name}").register(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policyc",
        description="Compile, verify and inspect sealnet routing policies.",
    )
    parser.add_argument("--version", action="version", version="policyc 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register_commands(sub, f"{__package__}.commands", COMMANDS)
    return parser


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, run the chosen command, and turn a user's mistake into one line and exit 1."""
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UserError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): exit quietly, and keep the
        # interpreter from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
