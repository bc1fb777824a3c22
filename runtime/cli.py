"""`sealnet`: the runtime's command line (node agent, attestation, control plane; cluster later).

Each command group lives in `runtime/commands/<name>.py` and exposes
`register(subparsers)`; `func(args) -> int` returns the exit code
(0 ok, 1 failure, 2 usage).
"""

from __future__ import annotations

import argparse
import sys

from sealnet.compiler.cli import register_commands, run

COMMANDS = ("node", "attest", "controlplane", "cluster")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sealnet", description="Run sealnet nodes and control planes.")
    parser.add_argument("--version", action="version", version="sealnet 0.1.0")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register_commands(sub, f"{__package__}.commands", COMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
