"""The canonical layout of a policy (`policyc fmt`), comments kept in place.

Style (docs/formatting.md): one statement per line; two-space indent in
blocks; a domain without comments inside that fits in MAX_WIDTH is written
on one line as `domain NAME { tee X; nodes A, B }`; consecutive rules (and
consecutive one-line domains) are aligned in columns; a blank line between
groups is kept (several collapse to one) and always follows the header.
Full-line comments stay before the statement or item they precede; a
comment after code on a line stays at the end of that line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sealnet.compiler import ast
from sealnet.compiler.parser import parse

INDENT = "  "
MAX_WIDTH = 100


class FormatError(Exception):
    """The text does not parse; carries the parser's diagnostics."""

    def __init__(self, diagnostics):
        self.diagnostics = diagnostics
        super().__init__("the policy has syntax errors")


@dataclass
class _Comments:
    """Comments not yet placed, in source order."""

    pending: list[ast.Comment]
    used: set[int] = field(default_factory=set)

    def before(self, line: int) -> list[str]:
        """Full-line comments that start before `line`."""
        out = []
        for i, c in enumerate(self.pending):
            if i not in self.used and c.span.line < line:
                self.used.add(i)
                out.append(c.text)
        return out

    def on_line(self, line: int) -> str | None:
        for i, c in enumerate(self.pending):
            if i not in self.used and c.span.line == line:
                self.used.add(i)
                return c.text
        return None

    def within(self, first: int, last: int) -> bool:
        return any(i not in self.used and first <= c.span.line <= last for i, c in enumerate(self.pending))

    def rest(self) -> list[str]:
        out = [c.text for i, c in enumerate(self.pending) if i not in self.used]
        self.used.update(range(len(self.pending)))
        return out


def format_text(text: str, file: str = "<input>") -> str:
    tree, diagnostics = parse(text, file)
    if tree is None:
        raise FormatError(diagnostics)
    return format_tree(tree, text)


def format_tree(tree: ast.PolicyFile, text: str) -> str:
    comments = _Comments(sorted(tree.comments, key=lambda c: (c.span.line, c.span.column)))
    blank_after = _blank_lines_after(tree, text)
    lines: list[str] = []
    groups = _groups(tree.statements, blank_after)
    for gi, group in enumerate(groups):
        if gi > 0:
            lines.append("")
        lines.extend(_format_group(group, comments))
    tail = comments.rest()
    if tail:
        if lines:
            lines.append("")
        lines.extend(tail)
    return "\n".join(lines).rstrip("\n") + "\n" if lines else ""


def _blank_lines_after(tree: ast.PolicyFile, text: str) -> set[int]:
    """Indices of statements followed by a blank line in the source."""
    source_lines = text.split("\n")
    out = set()
    for i, stmt in enumerate(tree.statements[:-1]):
        nxt = tree.statements[i + 1]
        between = source_lines[stmt.span.end_line: nxt.span.line - 1]
        if any(not ln.strip() for ln in between):
            out.add(i)
    return out


def _groups(statements, blank_after: set[int]) -> list[list[ast.Statement]]:
    groups: list[list[ast.Statement]] = []
    current: list[ast.Statement] = []
    for i, stmt in enumerate(statements):
        current.append(stmt)
        ends_group = (
            i in blank_after
            or isinstance(stmt, ast.PolicyHeader)
            or i == len(statements) - 1
            or _is_block(stmt) != _is_block(statements[i + 1])
        )
        if ends_group:
            groups.append(current)
            current = []
    return groups


def _is_block(stmt: ast.Statement) -> bool:
    return isinstance(stmt, ast.WorkflowDecl) or (isinstance(stmt, ast.DomainDecl) and not stmt.attrs)


def _format_group(group: list[ast.Statement], comments: _Comments) -> list[str]:
    rule_width = max((len(f"rule {s.name.name}:") for s in group if isinstance(s, ast.RuleDecl)), default=0)
    action_width = max((len(s.action.name) for s in group if isinstance(s, ast.RuleDecl)), default=0)
    one_line_domains = [s for s in group if isinstance(s, ast.DomainDecl) and _domain_fits(s, comments)]
    name_width = max((len(s.name.name) for s in one_line_domains), default=0)
    attr_widths = _attr_widths(one_line_domains)
    out: list[str] = []
    for stmt in group:
        out.extend(comments.before(stmt.span.line))
        if isinstance(stmt, ast.DomainDecl):
            if stmt in one_line_domains:
                body = _domain_one_line(stmt, name_width, attr_widths)
                out.extend(comments.before(stmt.span.end_line))  # a comment inside a one-line domain
                out.append(_with_trailing(body, comments.on_line(stmt.span.end_line)))
            else:
                out.extend(_domain_block(stmt, comments))
        elif isinstance(stmt, ast.WorkflowDecl):
            out.extend(_workflow_block(stmt, comments))
        else:
            text = _simple(stmt, rule_width, action_width)
            out.extend(comments.before(stmt.span.end_line))
            out.append(_with_trailing(text, comments.on_line(stmt.span.end_line)))
    return out


def _with_trailing(text: str, comment: str | None) -> str:
    return f"{text}  {comment}" if comment else text


# -- domains -------------------------------------------------------------------

def _attr_text(attr: ast.DomainAttr) -> str:
    if isinstance(attr, ast.TeeAttr):
        return f"tee {attr.kind.name}"
    if isinstance(attr, ast.NodesAttr):
        return "nodes " + ", ".join(c.name for c in attr.cidrs)
    if isinstance(attr, ast.MeasurementAttr):
        return f'measurement "{attr.value}"'
    return f"control {attr.address.name}:{attr.port}"


def _domain_fits(decl: ast.DomainDecl, comments: _Comments) -> bool:
    if not decl.attrs:
        return False
    if comments.within(decl.span.line, decl.span.end_line - 1) or (
        decl.span.end_line > decl.span.line and comments.within(decl.span.end_line, decl.span.end_line)
        and _comment_before_close(decl, comments)
    ):
        return False
    text = f"domain {decl.name.name} {{ " + "; ".join(_attr_text(a) for a in decl.attrs) + " }"
    return len(text) <= MAX_WIDTH


def _comment_before_close(decl: ast.DomainDecl, comments: _Comments) -> bool:
    return any(c.span.line == decl.span.end_line and c.span.column < decl.span.end_column
               for c in comments.pending)


def _attr_widths(domains: list[ast.DomainDecl]) -> list[int]:
    widths: list[int] = []
    for d in domains:
        for i, attr in enumerate(d.attrs[:-1]):
            w = len(_attr_text(attr)) + 1  # with its ';'
            if i < len(widths):
                widths[i] = max(widths[i], w)
            else:
                widths.append(w)
    return widths


def _domain_one_line(decl: ast.DomainDecl, name_width: int, widths: list[int]) -> str:
    parts = []
    for i, attr in enumerate(decl.attrs):
        text = _attr_text(attr)
        if i < len(decl.attrs) - 1:
            parts.append((text + ";").ljust(widths[i]))
        else:
            parts.append(text)
    return f"domain {decl.name.name.ljust(name_width)} {{ " + " ".join(parts) + " }"


def _domain_block(decl: ast.DomainDecl, comments: _Comments) -> list[str]:
    out = [_with_trailing(f"domain {decl.name.name} {{", _open_comment(decl, comments))]
    for attr in decl.attrs:
        out.extend(INDENT + c for c in comments.before(attr.span.line))
        out.append(INDENT + _with_trailing(_attr_text(attr), comments.on_line(attr.span.end_line)))
    out.extend(INDENT + c for c in comments.before(decl.span.end_line))
    out.append(_with_trailing("}", comments.on_line(decl.span.end_line)))
    return out


def _open_comment(stmt, comments: _Comments) -> str | None:
    """A comment on the line of `{` when no item shares that line."""
    items = stmt.attrs if isinstance(stmt, ast.DomainDecl) else stmt.items
    if items and items[0].span.line == stmt.span.line:
        return None
    if stmt.span.end_line == stmt.span.line:
        return None
    return comments.on_line(stmt.span.line)


# -- workflows -------------------------------------------------------------------

def _workflow_block(decl: ast.WorkflowDecl, comments: _Comments) -> list[str]:
    out = [_with_trailing(f"workflow {decl.name.name} {{", _open_comment(decl, comments))]
    stage_width = max((len(i.name.name) + 1 for i in decl.items if isinstance(i, ast.StageDecl)), default=0)
    domain_width = max((len(i.domain.name) for i in decl.items if isinstance(i, ast.StageDecl) and i.ports), default=0)
    for item in decl.items:
        out.extend(INDENT + c for c in comments.before(item.span.line))
        if isinstance(item, ast.StageDecl):
            text = f"{(item.name.name + ':').ljust(stage_width)} "
            if item.ports:
                text += f"{item.domain.name.ljust(domain_width)} port {item.ports}"
            else:
                text += item.domain.name
        else:
            text = f"{item.src.name} -> {item.dst.name}" + (f" {item.proto.name}" if item.proto else "")
        out.append(INDENT + _with_trailing(text, comments.on_line(item.span.end_line)))
    out.extend(INDENT + c for c in comments.before(decl.span.end_line))
    out.append(_with_trailing("}", comments.on_line(decl.span.end_line)))
    return out


# -- one-line statements -------------------------------------------------------------

def _simple(stmt: ast.Statement, rule_width: int, action_width: int) -> str:
    if isinstance(stmt, ast.PolicyHeader):
        return f'policy "{stmt.name}" version {stmt.version}'
    if isinstance(stmt, ast.RuleDecl):
        head = f"rule {stmt.name.name}:".ljust(rule_width)
        action = stmt.action.name
        rest = ("plaintext " if stmt.plaintext else "") + stmt.match_text()
        return f"{head} {action.ljust(action_width)} {rest}".rstrip()
    if isinstance(stmt, ast.DefaultDecl):
        return f"default {stmt.action.name}"
    if isinstance(stmt, ast.CipherDecl):
        return f"cipher {stmt.suite.name}"
    if isinstance(stmt, ast.AssertDecl):
        return f"assert {stmt.kind.name} {stmt.match_text()}"
    raise TypeError(f"cannot format {type(stmt).__name__}")
