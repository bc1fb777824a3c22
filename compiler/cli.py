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
import signal
import sys
import threading

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
        # Leave at once: the interpreter's teardown of a large verification
        # (z3 objects half built when the signal landed) took seconds under
        # load and printed "Exception ignored" tracebacks from their __del__.
        # Every command's own cleanup has already run as the exception unwound.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(130)
    except BrokenPipeError:
        # The reader went away (`| head`): exit quietly, and keep the
        # interpreter from complaining again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _stop_at_once(signum: int, frame: object) -> None:
    # A KeyboardInterrupt raised inside a __del__ (z3 frees its objects there)
    # is printed and dropped by Python, and the run would go on to report:
    # policyc stops here instead, with no report (stdout's buffer is dropped).
    # The verifier's and the loader's forked workers die with it: a worker
    # signalled alone (kill -INT of this pid, not the group) would run on.
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None:
        for child in multiprocessing.active_children():
            child.kill()
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os._exit(130)


def _stop_at_once_from_any_thread() -> None:
    """The handler above runs on the main thread between bytecodes, so not
    while it is inside a long C call (a Z3 query): the signal's byte on the
    wake-up pipe lets a thread stop the process then (ctypes calls release the GIL)."""
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    signal.set_wakeup_fd(writer, warn_on_full_buffer=False)

    def watch() -> None:
        while os.read(reader, 1) != bytes([signal.SIGINT]):
            pass
        _stop_at_once(signal.SIGINT, None)

    threading.Thread(target=watch, name="sigint", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    # Z3 installs its own SIGINT handler around each query and turns it into
    # a cancelled query (compiler/solving.py raises KeyboardInterrupt then);
    # everywhere else this handler takes the signal.
    if threading.current_thread() is not threading.main_thread():
        return run(build_parser(), argv)  # only the main thread may set handlers (in-process callers)
    previous = signal.signal(signal.SIGINT, _stop_at_once)
    if argv is None:  # policyc itself, not an in-process caller: its process to stop
        _stop_at_once_from_any_thread()
    try:
        return run(build_parser(), argv)
    finally:
        signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
