"""Parse policy text into the typed AST, reporting every syntax error in a file.

The whole file is parsed at once (fast path). When that fails, the file is
cut into statements (each statement keyword that starts a line begins a new
one) and each is parsed on its own, so one broken statement costs one
diagnostic and the rest of the file is still checked.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Iterable

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from sealnet.compiler import ast, fastparse
from sealnet.compiler.codes import LEXICAL_ERROR, SYNTAX_ERROR  # noqa: F401  (one registry)
from sealnet.compiler.diagnostics import Diagnostic, Severity
from sealnet.compiler.ir import Span

STATEMENT_KEYWORDS = ("policy", "domain", "workflow", "rule", "default", "cipher", "assert")
_STATEMENT_START = re.compile(r"^[ \t]*(" + "|".join(STATEMENT_KEYWORDS) + r")\b", re.MULTILINE)

# Terminal names as a person says them.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "CIDR": "an IPv4 address or CIDR",
    "INT": "a number",
    "STRING": 'a quoted string ("...")',
    "ACTION": "an action (deny, allow or seal)",
    "ASSERT_KIND": "an assertion kind (sealed, never or reachable)",
    "PROTO": "a protocol (tcp, udp or icmp)",
    "PLAINTEXT": "`plaintext`",
    "ANY": "`any`",
    "NOT": "`!`",
    "$END": "end of file",
}


@lru_cache(maxsize=None)
def _grammar_text() -> str:
    return resources.files("sealnet.grammar").joinpath("policy.lark").read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def _lark() -> Lark:
    return Lark(
        _grammar_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        start=["start", "statement"],
        maybe_placeholders=False,
    )


@lru_cache(maxsize=None)
def _literal_words() -> dict[str, str]:
    words = dict(_TERMINAL_WORDS)
    for term in _lark().terminals:
        if term.name not in words and term.pattern.type == "str":
            words[term.name] = f"`{term.pattern.value}`"
    return words


def describe_expected(names: Iterable[str]) -> str:
    words = sorted({_literal_words().get(n, n.lower()) for n in names if not n.startswith("_")})
    if not words:
        return "nothing more here"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


class _Builder(Transformer):
    """Lark tree -> typed AST; `line_offset` places a statement parsed alone."""

    def __init__(self, file: str, line_offset: int = 0):
        super().__init__()
        self.file = file
        self.line_offset = line_offset

    # -- spans ------------------------------------------------------------
    def _span(self, meta) -> Span:
        off = self.line_offset
        return Span(self.file, meta.line + off, meta.column, meta.end_line + off, meta.end_column)

    def _tok_span(self, tok: Token) -> Span:
        off = self.line_offset
        return Span(
            self.file, tok.line + off, tok.column, (tok.end_line or tok.line) + off,
            tok.end_column or tok.column + len(tok),
        )

    def _ident(self, tok: Token) -> ast.Ident:
        return ast.Ident(str(tok), self._tok_span(tok))

    # -- statements ---------------------------------------------------------
    def start(self, children):
        return list(children)

    @v_args(meta=True)
    def policy_header(self, meta, c):
        name_tok, version_tok = c
        name = str(name_tok)
        if name_tok.type == "STRING":
            name = name[1:-1]
        return ast.PolicyHeader(name, int(version_tok), self._tok_span(version_tok), self._span(meta))

    @v_args(meta=True)
    def domain_decl(self, meta, c):
        return ast.DomainDecl(self._ident(c[0]), tuple(c[1:]), self._span(meta))

    @v_args(meta=True)
    def tee_attr(self, meta, c):
        return ast.TeeAttr(self._ident(c[0]), self._span(meta))

    @v_args(meta=True)
    def nodes_attr(self, meta, c):
        return ast.NodesAttr(tuple(self._ident(t) for t in c), self._span(meta))

    @v_args(meta=True)
    def measurement_attr(self, meta, c):
        tok = c[0]
        return ast.MeasurementAttr(str(tok)[1:-1], self._tok_span(tok), self._span(meta))

    @v_args(meta=True)
    def control_attr(self, meta, c):
        addr, port = c
        return ast.ControlAttr(self._ident(addr), int(port), self._tok_span(port), self._span(meta))

    @v_args(meta=True)
    def workflow_decl(self, meta, c):
        return ast.WorkflowDecl(self._ident(c[0]), tuple(c[1:]), self._span(meta))

    @v_args(meta=True)
    def stage_decl(self, meta, c):
        ports = c[2] if len(c) > 2 else None
        return ast.StageDecl(self._ident(c[0]), self._ident(c[1]), ports, self._span(meta))

    @v_args(meta=True)
    def flow_decl(self, meta, c):
        proto = self._ident(c[2]) if len(c) > 2 else None
        return ast.FlowDecl(self._ident(c[0]), self._ident(c[1]), proto, self._span(meta))

    def _match_parts(self, c):
        proto = None
        rest = list(c)
        if rest and isinstance(rest[0], Token) and rest[0].type == "PROTO":
            proto = self._ident(rest.pop(0))
        src, dst = rest[0], rest[1]
        ports = rest[2] if len(rest) > 2 else None
        return proto, src, dst, ports

    @v_args(meta=True)
    def rule_decl(self, meta, c):
        name, action, *rest = c
        plaintext = False
        if rest and isinstance(rest[0], Token) and rest[0].type == "PLAINTEXT":
            plaintext = True
            rest.pop(0)
        proto, src, dst, ports = self._match_parts(rest)
        return ast.RuleDecl(
            self._ident(name), self._ident(action), plaintext, proto, src, dst, ports, self._span(meta)
        )

    @v_args(meta=True)
    def default_decl(self, meta, c):
        return ast.DefaultDecl(self._ident(c[0]), self._span(meta))

    @v_args(meta=True)
    def cipher_decl(self, meta, c):
        return ast.CipherDecl(self._ident(c[0]), self._span(meta))

    @v_args(meta=True)
    def assert_decl(self, meta, c):
        kind, *rest = c
        proto, src, dst, ports = self._match_parts(rest)
        return ast.AssertDecl(self._ident(kind), proto, src, dst, ports, self._span(meta))

    # -- endpoints and ports --------------------------------------------------
    @v_args(meta=True)
    def endpoint(self, meta, c):
        negations = sum(1 for x in c if isinstance(x, Token) and x.type == "NOT")
        body = c[-1]
        if isinstance(body, tuple):
            atoms, is_set = body, True
        else:
            atoms, is_set = (body,), False
        return ast.Endpoint(negations, atoms, is_set, self._span(meta))

    def endpoint_set(self, c):
        return tuple(c)

    @v_args(meta=True)
    def any_endpoint(self, meta, c):
        return ast.EndpointAtom("any", "any", self._span(meta))

    @v_args(meta=True)
    def cidr_endpoint(self, meta, c):
        return ast.EndpointAtom("cidr", str(c[0]), self._span(meta))

    @v_args(meta=True)
    def ref_endpoint(self, meta, c):
        return ast.EndpointAtom("ref", ".".join(str(t) for t in c), self._span(meta))

    @v_args(meta=True)
    def port_clause(self, meta, c):
        spec = c[0]
        if isinstance(spec, ast.PortItem):
            return ast.PortSpec((spec,), False, self._span(meta))
        return ast.PortSpec(tuple(spec), True, self._span(meta))

    def port_set(self, c):
        return list(c)

    @v_args(meta=True)
    def port_item(self, meta, c):
        lo = int(c[0])
        hi = int(c[1]) if len(c) > 1 else lo
        return ast.PortItem(lo, hi, self._span(meta))


def _error_diagnostic(
    exc: UnexpectedInput, text: str, file: str, line_offset: int, whole_file: bool = False
) -> Diagnostic:
    line = (getattr(exc, "line", None) or 1)
    column = (getattr(exc, "column", None) or 1)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = Span(file, line + line_offset, column, line + line_offset, column + 1)
        if char == '"':
            return Diagnostic(Severity.ERROR, LEXICAL_ERROR, "unterminated string", span,
                              hint='close the string with " on the same line')
        shown = repr(char) if char.isprintable() and char not in " \t" else f"U+{ord(char):04X}" if char else "end of input"
        return Diagnostic(
            Severity.ERROR, LEXICAL_ERROR, f"unexpected character {shown}", span,
            hint=f"expected {describe_expected(exc.allowed or ())}" if exc.allowed else None,
        )
    if isinstance(exc, UnexpectedEOF) or (
        isinstance(exc, UnexpectedToken) and exc.token.type == "$END"
    ):
        # Point just after the last thing written, not at trailing blank lines.
        body = _strip_trailing_comments(text)
        last_line = body.count("\n") + 1
        last_col = len(body) - (body.rfind("\n") + 1) + 1
        span = Span(file, last_line + line_offset, last_col, last_line + line_offset, last_col + 1)
        where = "end of file" if whole_file else "end of statement"
        return Diagnostic(Severity.ERROR, SYNTAX_ERROR,
                          f"unexpected {where}; expected {describe_expected(exc.expected)}", span)
    assert isinstance(exc, UnexpectedToken)
    tok = exc.token
    span = Span(
        file, tok.line + line_offset, tok.column,
        (tok.end_line or tok.line) + line_offset, tok.end_column or tok.column + len(tok),
    )
    return Diagnostic(
        Severity.ERROR, SYNTAX_ERROR,
        f"unexpected `{tok}`; expected {describe_expected(exc.expected)}", span,
        hint=_hint_for(tok, exc.expected),
    )


def _strip_trailing_comments(text: str) -> str:
    lines = text.rstrip().split("\n")
    while len(lines) > 1 and (not lines[-1].strip() or lines[-1].lstrip().startswith("#")):
        lines.pop()
    return "\n".join(lines).rstrip()


def _hint_for(tok: Token, expected: Iterable[str]) -> str | None:
    expected = set(expected)
    if "ACTION" in expected and tok.type == "NAME":
        return "a rule is written `rule NAME: deny|allow|seal [tcp|udp|icmp] from A to B [port P]`"
    if "ASSERT_KIND" in expected:
        return "an assertion is written `assert sealed|never|reachable [PROTO] from A to B [port P]`"
    if "COLON" in expected and tok.type == "ACTION":
        return "a rule's name is followed by a colon: `rule NAME: ACTION ...`"
    if tok.type == "NAME" and tok.value in ("ports", "proto", "protocol"):
        return "write `port P` after the endpoints and the protocol before `from`"
    return None


def _statement_chunks(text: str) -> list[tuple[int, str]]:
    """(line offset, text) of each statement; chunks start at a line start."""
    starts = [m.start() for m in _STATEMENT_START.finditer(text)]
    if not starts or starts[0] != 0:
        starts.insert(0, 0)
    chunks = []
    line = 0  # counted chunk by chunk: a count from the start each time is quadratic
    for begin, end in zip(starts, starts[1:] + [len(text)]):
        chunk = text[begin:end]
        chunks.append((line, chunk))
        line += chunk.count("\n")
    return chunks


def parse(text: str, file: str = "<input>") -> tuple[ast.PolicyFile | None, list[Diagnostic]]:
    """Parse a whole policy; the AST is None iff there is a syntax error."""
    fast = fastparse.parse_file(text, file)
    if fast is not None:
        return fast, []
    return parse_with_lark(text, file)


def parse_with_lark(text: str, file: str = "<input>") -> tuple[ast.PolicyFile | None, list[Diagnostic]]:
    """`parse` by Lark's parser alone: the reference the fast path is tested against."""
    try:
        tree = _lark().parse(text, start="start")
    except UnexpectedInput:
        return None, _parse_statements_for_errors(text, file)
    statements = _Builder(file).transform(tree)
    # Comments by a scan for `#` outside strings: in text that parses, exactly the lexer's
    # COMMENT tokens (Lark's whole-file basic lexer, used here before, could fail on text the
    # contextual lexer reads, e.g. `nodes198.18.1.0/24`).
    return ast.PolicyFile(file, tuple(statements), tuple(fastparse.comments(text, file))), []


def parse_statements(text: str, file: str) -> tuple[list[ast.Statement], list[Diagnostic]]:
    """Every statement that parses on its own, and one diagnostic per one that does not.

    Used by tools that want as much of a broken file as possible (the language server).
    """
    statements: list[ast.Statement] = []
    diagnostics: list[Diagnostic] = []
    for line_offset, chunk in statement_chunks(text):
        statement, error = parse_statement(chunk, file, line_offset)
        if statement is not None:
            statements.append(statement)
        if error is not None:
            diagnostics.append(error)
    return statements, diagnostics


def statement_chunks(text: str) -> list[tuple[int, str]]:
    """(line offset, text) of each statement-sized piece of a file, in order."""
    return _statement_chunks(text)


def parse_statement(chunk: str, file: str, line_offset: int = 0) -> tuple[ast.Statement | None, Diagnostic | None]:
    """One chunk of `statement_chunks`: its statement, or its syntax error (both None: only comments)."""
    if not chunk.strip() or _only_comments(chunk):
        return None, None
    fast = fastparse.parse_statement(chunk, file, line_offset)
    if fast is not None:
        return fast, None
    return parse_statement_with_lark(chunk, file, line_offset)


def parse_statement_with_lark(chunk: str, file: str, line_offset: int = 0) -> tuple[ast.Statement | None, Diagnostic | None]:
    """`parse_statement` by Lark's parser alone (the chunk is not blank)."""
    try:
        tree = _lark().parse(chunk, start="statement")
    except UnexpectedInput as exc:
        return None, _error_diagnostic(exc, chunk, file, line_offset)
    return _Builder(file, line_offset).transform(tree), None


def _only_comments(chunk: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in chunk.splitlines())


def _parse_statements_for_errors(text: str, file: str) -> list[Diagnostic]:
    _, diagnostics = parse_statements(text, file)
    if not diagnostics:
        # The file fails as a whole but each statement parses: the cut itself
        # hid the problem (e.g. a keyword inside a string). Report the
        # whole-file error rather than nothing.
        try:
            _lark().parse(text, start="start")
        except UnexpectedInput as exc:
            diagnostics.append(_error_diagnostic(exc, text, file, 0, whole_file=True))
    return diagnostics


def tree_of(text: str) -> Tree:
    """The raw Lark tree (for debugging the grammar)."""
    return _lark().parse(text, start="start")
