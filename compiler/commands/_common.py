"""What several policyc commands share: reading policies, printing diagnostics,
the solver budget flags and the exit codes.

Exit codes, the same in every command for the same situation (docs/diagnostics.md):
  0  clean: no error (warnings allowed), assertions proved, policies equivalent
  1  findings or failures: errors in a policy, failed assertions or flows,
     differences (diff --exit-code), warnings under --strict
  2  usage error, or an input that cannot be read (missing, a directory, not UTF-8, too large)
  3  unknown: the solver could not decide something (timeout, resource limit,
     budget); never a pass
  130  interrupted (Ctrl-C): no report is printed
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import sys
from dataclasses import dataclass, field

from sealnet.compiler.codes import UNREADABLE_INPUT
from sealnet.compiler.diagnostics import Diagnostic, Severity
from sealnet.contracts.errors import UserError
from sealnet.compiler.frontend import compile_text, has_errors, read_policy  # noqa: F401  (has_errors: for the commands)
from sealnet.compiler.ir import Policy, Span
from sealnet.compiler.output import use_color
from sealnet.compiler.render import render_all, summary

FORMATS = ("text", "json", "sarif")

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_UNKNOWN = 3
EXIT_INTERRUPTED = 130
EXIT_CODES_HELP = """exit codes:
  0    clean (no error; diff: compared, as git diff)
  1    findings or failures: errors, failed assertions or flows, differences with --exit-code
  2    usage error or unreadable input
  3    unknown: the solver could not decide something (never a pass)
  130  interrupted (Ctrl-C): no report"""
# Subcommands pass this to add_parser with the epilog above, so its lines stay as written.
HELP_FORMATTER = argparse.RawDescriptionHelpFormatter
UNREADABLE_CODE = UNREADABLE_INPUT


def add_budget_arguments(parser: argparse.ArgumentParser) -> None:
    """--timeout and --budget: how long one solver query and the whole run may take."""
    from sealnet.compiler.limits import DEFAULT_CUBE_BUDGET, DEFAULT_QUERY_TIMEOUT_S, DEFAULT_TOTAL_BUDGET_S

    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_QUERY_TIMEOUT_S, metavar="SECONDS",
                        help=f"limit per solver query (default {DEFAULT_QUERY_TIMEOUT_S:g}); "
                             "a query that runs out is reported unknown")
    parser.add_argument("--budget", type=_seconds, default=DEFAULT_TOTAL_BUDGET_S, metavar="SECONDS",
                        help=f"limit for the whole run (default {DEFAULT_TOTAL_BUDGET_S:g}); "
                             "what is left undecided is reported unknown")
    parser.add_argument("--cube-budget", type=int, default=DEFAULT_CUBE_BUDGET, metavar="N",
                        help=f"cubes the exact interval arithmetic may use before Z3 is asked "
                             f"(default {DEFAULT_CUBE_BUDGET}; 0: ask Z3 whenever a region must be cut)")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def budget_of(args: argparse.Namespace):
    from sealnet.compiler.solving import Budget

    if args.cube_budget < 0:
        raise UserError("--cube-budget must be 0 or more")
    return Budget(query_timeout=args.timeout, total=args.budget, cubes=args.cube_budget)


def exit_code(*, errors: bool = False, unknown: bool = False, unreadable: bool = False) -> int:
    """One rule for every command: unreadable input 2, else a definite failure 1, else unknown 3, else 0."""
    if unreadable:
        return EXIT_USAGE
    if errors:
        return EXIT_FINDINGS
    return EXIT_UNKNOWN if unknown else EXIT_OK


@dataclass
class Loaded:
    """One policy file: its text (None when unreadable), IR and diagnostics."""

    path: str
    source: str | None
    policy: Policy | None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    error: str | None = None  # a one-line reason the file could not be read

    def all_diagnostics(self) -> list[Diagnostic]:
        """Its diagnostics, with an unreadable file as one error diagnostic (so JSON carries it too)."""
        if self.error is None:
            return self.diagnostics
        found = re.match(rf"{re.escape(self.path)}:(\d+):(\d+): (.*)", self.error)
        line, column = (int(found[1]), int(found[2])) if found else (1, 1)
        message = found[3] if found else self.error.removeprefix(f"{self.path}: ")
        return [Diagnostic(Severity.ERROR, UNREADABLE_CODE, f"cannot read the policy: {message}",
                           Span(self.path, line, column, line, column + 1))] + self.diagnostics


def load(path: str) -> Loaded:
    try:
        source = read_policy(path)
    except UserError as exc:
        return Loaded(path, None, None, error=str(exc))
    policy, diagnostics = compile_text(source, path)
    return Loaded(path, source, policy, diagnostics)


# Files at least this big are parsed in a forked process beside the others
# (parsing is most of the time of a large policy; the machine has cores to spare).
PARALLEL_LOAD_BYTES = 256 * 1024


def load_all(paths: list[str]) -> list[Loaded]:
    """load() of each path; the big ones after the first in forked children, at the same time."""
    def size(path: str) -> int:
        try:
            return os.path.getsize(path) if os.path.isfile(path) else 0
        except OSError:
            return 0

    forked = [i for i, path in enumerate(paths) if i > 0 and size(path) >= PARALLEL_LOAD_BYTES]
    if not forked or (os.cpu_count() or 1) < 2:
        return [load(path) for path in paths]
    import multiprocessing  # only when files are loaded in parallel: it is slow to import

    ctx = multiprocessing.get_context("fork")
    children = []
    for i in forked:
        reader, writer = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_load_into, args=(paths[i], writer), daemon=True)
        child.start()
        writer.close()
        children.append((i, reader, child))
    results: dict[int, Loaded] = {}
    try:
        for i, path in enumerate(paths):
            if i not in forked:
                results[i] = load(path)
        for i, reader, _ in children:
            try:
                results[i] = pickle.loads(reader.recv_bytes())
            except EOFError:
                results[i] = load(paths[i])  # the child died: do it here
    finally:
        for _, reader, child in children:
            reader.close()
            child.join(timeout=0.5)
            if child.is_alive():
                child.kill()
                child.join()
    return [results[i] for i in range(len(paths))]


def _load_into(path: str, writer) -> None:
    try:
        writer.send_bytes(pickle.dumps(load(path)))
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
        os._exit(130)
    finally:
        writer.close()


def print_diagnostics(loaded: list[Loaded], fmt: str, status: str | None = None) -> None:
    """Print every file's diagnostics (and unreadable files) in one format.

    JSON: {"status": ok|error|unknown (or the caller's), "diagnostics": [...]}.
    """
    diagnostics = [d for item in loaded for d in item.all_diagnostics()]
    for item in loaded:
        if item.error:
            print(f"policyc: error: {item.error}", file=sys.stderr)
    if fmt == "json":
        status = status or ("error" if any(d.severity is Severity.ERROR for d in diagnostics) else "ok")
        print(json.dumps({"status": status,
                          "diagnostics": [d.to_json() for d in diagnostics]}, indent=2))
    elif fmt == "sarif":
        from sealnet.compiler.sarif import to_sarif

        print(json.dumps(to_sarif(diagnostics), indent=2))
    else:
        sources = {item.path: item.source for item in loaded}
        color = use_color(sys.stdout)
        shown = [d for d in diagnostics if d.code != UNREADABLE_CODE]  # already on stderr
        if shown:
            print(render_all(shown, sources.get, color))
            print()
        readable = sum(1 for item in loaded if not item.error)
        print(f"{readable} file{'s' if readable != 1 else ''} checked: {summary(diagnostics)}")
