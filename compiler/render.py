"""Diagnostics as a person reads them (rustc/ruff style).

    examples/bad.policy:3:26: error[E101]: `nowhere` is not a domain or workflow stage
      |
    3 | rule r1: allow from a to nowhere
      |                          ^^^^^^^
      = hint: did you mean `now`?
      = note: examples/bad.policy:2:8: first defined here
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable

from sealnet.compiler.diagnostics import Diagnostic, Severity
from sealnet.compiler.output import paint

_STYLE = {Severity.ERROR: ("red", "bold"), Severity.WARNING: ("yellow", "bold"), Severity.INFO: ("cyan", "bold")}


@functools.lru_cache(maxsize=8)
def _lines(source: str) -> list[str]:
    """A source split once (a str caches its hash, so the lookup is cheap): rendering
    thousands of diagnostics of one large policy must not split it once each."""
    return source.split("\n")


def _line_of(source: str | None, number: int) -> str | None:
    if source is None:
        return None
    lines = _lines(source)
    if 1 <= number <= len(lines):
        return lines[number - 1].rstrip("\r")
    return None


def render(diag: Diagnostic, source: str | None, color: bool = False) -> str:
    span = diag.span
    style = _STYLE[diag.severity]
    head = (
        f"{paint(f'{span.file}:{span.line}:{span.column}:', 'bold', enabled=color)} "
        f"{paint(f'{diag.severity.value}[{diag.code}]', *style, enabled=color)}: "
        f"{paint(diag.message, 'bold', enabled=color)}"
    )
    out = [head]
    text = _line_of(source, span.line)
    gutter = " " * len(str(span.line))
    bar = paint("|", "blue", enabled=color)
    if text is not None:
        shown = text.expandtabs(1)
        start = max(span.column - 1, 0)
        end = span.end_column - 1 if span.end_line == span.line else len(shown)
        width = max(1, min(end, len(shown)) - start) if start < len(shown) else 1
        out.append(f"{gutter} {bar}")
        out.append(f"{paint(str(span.line), 'blue', enabled=color)} {bar} {_printable(shown)}")
        out.append(f"{gutter} {bar} {' ' * start}{paint('^' * width, *style, enabled=color)}")
    if diag.hint:
        out.append(f"{gutter} = {paint('hint', 'bold', enabled=color)}: {diag.hint}")
    for note in diag.notes:
        where = f"{note.span.file}:{note.span.line}:{note.span.column}"
        out.append(f"{gutter} = {paint('note', 'bold', enabled=color)}: {where}: {note.message}")
    return "\n".join(out)


def _printable(text: str) -> str:
    """Control characters would move the terminal's cursor: show them as ?."""
    return "".join(c if c.isprintable() or c == " " else "?" for c in text)


def render_all(
    diagnostics: Iterable[Diagnostic], source_for: Callable[[str], str | None], color: bool = False
) -> str:
    blocks = [render(d, source_for(d.span.file), color) for d in diagnostics]
    return "\n\n".join(blocks)


def summary(diagnostics: list[Diagnostic]) -> str:
    errors = sum(1 for d in diagnostics if d.severity is Severity.ERROR)
    warnings = sum(1 for d in diagnostics if d.severity is Severity.WARNING)

    def plural(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    return f"{plural(errors, 'error')}, {plural(warnings, 'warning')}"
