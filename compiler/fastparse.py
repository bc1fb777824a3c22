"""A fast recogniser for policy text, giving exactly the AST that Lark's parser gives.

Lark's LALR parser, its tree and the tree-to-AST transform cost most of a
large policy's check. This module reads the same language by hand: a strict
regular expression for the common one-line rule, and a small recursive
descent over tokens for every other statement (and any rule the expression
does not take). It only ever says "this is the AST" or "not recognised"
(None): anything it is not certain Lark reads the same way — every error,
and oddities such as `port80` or `from anything`, which Lark's contextual
lexer splits into two tokens — is left to the caller's Lark path, which also
produces every diagnostic. tests/test_fastparse.py checks on generated and
mutated text that both paths agree, spans included.

How Lark lexes, and so what this module must match: tokens are the
grammar's terminals (grammar/policy.lark), whitespace and `#` comments are
skipped, and the lexer of each parser state tries only the terminals that
state accepts, higher priority first. A keyword of the same priority as NAME
is a keyword only where a NAME would equally be accepted and the whole word
equals it; the priority-2 terminals (`any`, protocols, actions, ...) match
as prefixes. So a word is read here by the NAME expression as a whole, and
where a priority-2 keyword could be read as a prefix of it (an endpoint
starting `any...`, a workflow item after a flow starting `tcp...`), the text
is not recognised.
"""

from __future__ import annotations

import re

from sealnet.compiler import ast
from sealnet.compiler.ir import Span

_NAME = r"[A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)*"
_CIDR = r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+(?:/[0-9]+)?"
_INT = r"[0-9]+"

# Lark's WS (common.WS) and COMMENT: exactly these characters, not str.isspace().
_TRIVIA = re.compile(r"(?:[ \t\f\r\n]+|#[^\n]*)*")
_TOKEN = re.compile(
    rf"(?P<W>{_NAME})|(?P<C>{_CIDR})|(?P<I>{_INT})|(?P<S>\"[^\"\n]*\")|(?P<P>->|[{{}}:;,.!\-])"
)
_WORD = re.compile(_NAME)
_COMMENT_OR_STRING = re.compile(r"\"[^\"\n]*\"|#[^\n]*")

# One rule on one line, tokens apart by blanks: what nearly every rule looks like.
_S = r"[ \t]"
_ATOM = rf"(?:{_CIDR}|{_NAME}(?:\.{_NAME})?)"
_EP = rf"(?:!{_S}*)*(?:{_ATOM}|\{{{_S}*{_ATOM}(?:{_S}*,{_S}*{_ATOM})*{_S}*\}})"
_ITEM = rf"{_INT}(?:{_S}*-{_S}*{_INT})?"
_RULE = re.compile(
    rf"rule{_S}+(?P<name>{_NAME}){_S}*:{_S}*(?P<action>deny|allow|seal)"
    rf"(?:{_S}+(?P<plain>plaintext))?(?:{_S}+(?P<proto>tcp|udp|icmp))?"
    rf"{_S}+from{_S}+(?P<src>{_EP}){_S}+to{_S}+(?P<dst>{_EP})"
    rf"(?:{_S}+(?P<port>port){_S}+(?P<ports>{_ITEM}|\{{{_S}*{_ITEM}(?:{_S}*,{_S}*{_ITEM})*{_S}*\}}))?"
    rf"(?P<seps>(?:{_S}*;)*)[ \t\r]*(?=\n|\Z)"
)
# One workflow item on one line: `A: D [port P]` or `A -> B [PROTO]`.
_ITEM_LINE = re.compile(
    rf"(?P<first>{_NAME}){_S}*(?:(?P<colon>:){_S}*(?P<domain>{_NAME})(?:{_S}+(?P<port>port){_S}+(?P<value>{_INT}))?"
    rf"|->{_S}*(?P<dst>{_NAME})(?:{_S}+(?P<proto>tcp|udp|icmp))?)(?P<seps>(?:{_S}*;)*)[ \t\r]*(?=\n|\Z)"
)
_EP_PART = re.compile(rf"!|{_ATOM}")  # the parts of an endpoint `_EP` matched
_ITEM_PART = re.compile(rf"({_INT})(?:{_S}*-{_S}*({_INT}))?")

_ACTIONS = frozenset({"deny", "allow", "seal"})
_ASSERT_KINDS = frozenset({"sealed", "never", "reachable"})
_PROTOS = frozenset({"tcp", "udp", "icmp"})
_STATEMENTS = frozenset({"policy", "domain", "workflow", "rule", "default", "cipher", "assert"})
# Every word the grammar spells out. Where a NAME may come, Lark's lexer of
# that LALR state may also know some of these (more than the grammar allows
# there: states are merged), so a name spelled as one is not taken here.
_KEYWORDS = _STATEMENTS | _ACTIONS | _ASSERT_KINDS | _PROTOS | {
    "version", "tee", "nodes", "measurement", "control", "from", "to", "port", "plaintext", "any"}
# Priority-2 words that Lark's lexer reads as a prefix in states where a NAME
# may also come (endpoints: `any`; after a flow: protocols).
_PREFIXES = ("any", "tcp", "udp", "icmp")


def _plain_name(word: str) -> bool:
    """A word Lark certainly reads as one NAME wherever a NAME may come."""
    return word not in _KEYWORDS and not word.startswith(_PREFIXES)


class _Unrecognised(Exception):
    """Not certainly what Lark reads: the caller parses with Lark instead."""


def parse_file(text: str, file: str) -> ast.PolicyFile | None:
    """The whole file's AST as Lark's `start` gives it, or None if not recognised."""
    try:
        statements = _Reader(text, file, 0).statements()
    except (_Unrecognised, ValueError):  # ValueError: int() of a number too long to convert
        return None
    return ast.PolicyFile(file, tuple(statements), tuple(comments(text, file)))


def parse_statement(chunk: str, file: str, line_offset: int = 0) -> ast.Statement | None:
    """One statement (with blanks and comments around it) as Lark's `statement` gives it, or None."""
    try:
        reader = _Reader(chunk, file, line_offset)
        reader.skip()
        statement = reader.statement()
        reader.skip()
        if reader.pos != len(chunk):
            return None
        return statement
    except (_Unrecognised, ValueError):
        return None


def comments(text: str, file: str) -> list[ast.Comment]:
    """Comments as the lexer finds them: `#` to the end of the line, outside strings."""
    out: list[ast.Comment] = []
    if "#" not in text:
        return out
    line, counted = 1, 0
    for m in _COMMENT_OR_STRING.finditer(text):
        if text[m.start()] != "#":
            continue
        start = m.start()
        line += text.count("\n", counted, start)
        counted = start
        column = start - text.rfind("\n", 0, start)
        body = m.group().rstrip()
        out.append(ast.Comment(body, Span(file, line, column, line, column + len(body))))
    return out


class _Reader:
    """A cursor over the text: position, line, and where the line starts (for columns)."""

    def __init__(self, text: str, file: str, line_offset: int):
        self.text = text
        self.file = file
        self.pos = 0
        self.line = 1 + line_offset
        self.line_start = 0  # index of the current line's first character
        self.last_end: tuple[int, int] = (self.line, 1)  # (line, column) just after the last token read

    # -- tokens ---------------------------------------------------------------
    def skip(self) -> None:
        """Past whitespace and comments, counting lines."""
        text, pos = self.text, self.pos
        end = _TRIVIA.match(text, pos).end()
        if end != pos:
            newlines = text.count("\n", pos, end)
            if newlines:
                self.line += newlines
                self.line_start = text.rfind("\n", pos, end) + 1
            self.pos = end

    def peek(self) -> tuple[str, str]:
        """(kind, text) of the next token without taking it; ("", "") at the end."""
        self.skip()
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            if self.pos == len(self.text):
                return "", ""
            raise _Unrecognised
        return m.lastgroup or "", m.group()

    def take(self) -> tuple[str, str, Span]:
        """The next token: its kind, its text and its span."""
        self.skip()
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            raise _Unrecognised
        value = m.group()
        column = self.pos - self.line_start + 1
        end = column + len(value)
        self.pos = m.end()
        self.last_end = (self.line, end)
        return m.lastgroup or "", value, Span(self.file, self.line, column, self.line, end)

    def expect(self, kind: str, value: str | None = None) -> tuple[str, Span]:
        got, text, span = self.take()
        if got != kind or (value is not None and text != value):
            raise _Unrecognised
        return text, span

    def ident(self) -> ast.Ident:
        """A NAME where only a NAME is accepted: any word, keywords included."""
        text, span = self.expect("W")
        if not _plain_name(text):
            raise _Unrecognised
        return ast.Ident(text, span)

    def at(self, value: str) -> bool:
        kind, text = self.peek()
        return text == value and kind in ("P", "W")

    def seps(self) -> None:
        """`_sep?`: any number of `;`, which belong to the statement before them."""
        while self.at(";"):
            self.take()

    def span_from(self, start: Span) -> Span:
        line, column = self.last_end
        return Span(self.file, start.line, start.column, line, column)

    # -- statements -------------------------------------------------------------
    def statements(self) -> list[ast.Statement]:
        out: list[ast.Statement] = []
        text = self.text
        while True:
            self.skip()
            if self.pos == len(text):
                return out
            if text.startswith("rule", self.pos):
                rule = self.one_line_rule()
                if rule is not None:
                    out.append(rule)
                    continue
            out.append(self.statement())

    def statement(self) -> ast.Statement:
        kind, word = self.peek()
        if kind != "W" or word not in _STATEMENTS:
            raise _Unrecognised
        return getattr(self, "st_" + word)()

    def st_policy(self) -> ast.PolicyHeader:
        _, start = self.expect("W", "policy")
        kind, value, _ = self.take()
        if kind == "S":
            value = value[1:-1]
        elif kind != "W" or not _plain_name(value):
            raise _Unrecognised
        self.expect("W", "version")
        version, version_span = self.expect("I")
        self.seps()
        return ast.PolicyHeader(value, int(version), version_span, self.span_from(start))

    def st_domain(self) -> ast.DomainDecl:
        _, start = self.expect("W", "domain")
        name = self.ident()
        self.expect("P", "{")
        attrs: list[ast.DomainAttr] = []
        while not self.at("}"):
            attrs.append(self.domain_attr())
        self.take()
        self.seps()
        return ast.DomainDecl(name, tuple(attrs), self.span_from(start))

    def domain_attr(self) -> ast.DomainAttr:
        word, start = self.expect("W")
        attr: ast.DomainAttr
        if word == "tee":
            kind = self.ident()
            self.seps()
            attr = ast.TeeAttr(kind, self.span_from(start))
        elif word == "nodes":
            cidrs = [self.cidr()]
            while self.at(","):
                self.take()
                cidrs.append(self.cidr())
            self.seps()
            attr = ast.NodesAttr(tuple(cidrs), self.span_from(start))
        elif word == "measurement":
            value, value_span = self.expect("S")
            self.seps()
            attr = ast.MeasurementAttr(value[1:-1], value_span, self.span_from(start))
        elif word == "control":
            address = self.cidr()
            self.expect("P", ":")
            port, port_span = self.expect("I")
            self.seps()
            attr = ast.ControlAttr(address, int(port), port_span, self.span_from(start))
        else:
            raise _Unrecognised
        return attr

    def cidr(self) -> ast.Ident:
        text, span = self.expect("C")
        return ast.Ident(text, span)

    def st_workflow(self) -> ast.WorkflowDecl:
        _, start = self.expect("W", "workflow")
        name = self.ident()
        self.expect("P", "{")
        items: list[ast.WorkflowItem] = []
        while not self.at("}"):
            items.append(self.workflow_item())
        self.take()
        self.seps()
        return ast.WorkflowDecl(name, tuple(items), self.span_from(start))

    def workflow_item(self) -> ast.WorkflowItem:
        item = self.one_line_item()
        if item is not None:
            return item
        first = self.ident()
        _, punct, _ = self.take()
        if punct == ":":
            domain = self.ident()
            ports = self.port_clause() if self.at("port") else None
            self.seps()
            return ast.StageDecl(first, domain, ports, self.span_from(first.span))
        if punct == "->":
            dst = self.ident()
            proto = None
            kind, word = self.peek()
            if word in _PROTOS and kind == "W":
                proto = self.keyword(_PROTOS)
            self.seps()
            return ast.FlowDecl(first, dst, proto, self.span_from(first.span))
        raise _Unrecognised

    def st_rule(self) -> ast.RuleDecl:
        _, start = self.expect("W", "rule")
        name = self.ident()
        self.expect("P", ":")
        action = self.keyword(_ACTIONS)
        plaintext = False
        if self.at("plaintext"):
            self.take()
            plaintext = True
        proto, src, dst, ports = self.match_parts()
        return ast.RuleDecl(name, action, plaintext, proto, src, dst, ports, self.span_from(start))

    def st_default(self) -> ast.DefaultDecl:
        _, start = self.expect("W", "default")
        action = self.keyword(_ACTIONS)
        self.seps()
        return ast.DefaultDecl(action, self.span_from(start))

    def st_cipher(self) -> ast.CipherDecl:
        _, start = self.expect("W", "cipher")
        suite = self.ident()
        self.seps()
        return ast.CipherDecl(suite, self.span_from(start))

    def st_assert(self) -> ast.AssertDecl:
        _, start = self.expect("W", "assert")
        kind = self.keyword(_ASSERT_KINDS)
        proto, src, dst, ports = self.match_parts()
        return ast.AssertDecl(kind, proto, src, dst, ports, self.span_from(start))

    def keyword(self, words: frozenset[str]) -> ast.Ident:
        text, span = self.expect("W")
        if text not in words:
            raise _Unrecognised
        return ast.Ident(text, span)

    def match_parts(self) -> tuple[ast.Ident | None, ast.Endpoint, ast.Endpoint, ast.PortSpec | None]:
        """`[PROTO] from A to B [port P] _sep?`, shared by rules and assertions."""
        proto = self.keyword(_PROTOS) if self.peek()[1] in _PROTOS else None
        self.expect("W", "from")
        src = self.endpoint()
        self.expect("W", "to")
        dst = self.endpoint()
        ports = self.port_clause() if self.at("port") else None
        self.seps()
        return proto, src, dst, ports

    def endpoint(self) -> ast.Endpoint:
        negations = 0
        start: Span | None = None
        while self.at("!"):
            _, _, span = self.take()
            start = start or span
            negations += 1
        if self.at("{"):
            _, _, brace = self.take()
            atoms = [self.atom()]
            while self.at(","):
                self.take()
                atoms.append(self.atom())
            self.expect("P", "}")
            return ast.Endpoint(negations, tuple(atoms), True, self.span_from(start or brace))
        atom = self.atom()
        return ast.Endpoint(negations, (atom,), False, self.span_from(start or atom.span))

    def atom(self) -> ast.EndpointAtom:
        kind, text, span = self.take()
        if kind == "C":
            return ast.EndpointAtom("cidr", text, span)
        if kind != "W":
            raise _Unrecognised
        if text == "any":
            return ast.EndpointAtom("any", "any", span)
        if not _plain_name(text):
            raise _Unrecognised
        if self.at("."):
            self.take()
            second = self.ident().name
            return ast.EndpointAtom("ref", f"{text}.{second}", self.span_from(span))
        return ast.EndpointAtom("ref", text, span)

    def port_clause(self) -> ast.PortSpec:
        _, start = self.expect("W", "port")
        if self.at("{"):
            self.take()
            items = [self.port_item()]
            while self.at(","):
                self.take()
                items.append(self.port_item())
            self.expect("P", "}")
            return ast.PortSpec(tuple(items), True, self.span_from(start))
        return ast.PortSpec((self.port_item(),), False, self.span_from(start))

    def port_item(self) -> ast.PortItem:
        lo, start = self.expect("I")
        hi = lo
        if self.at("-"):
            self.take()
            hi, _ = self.expect("I")
        return ast.PortItem(int(lo), int(hi), self.span_from(start))

    def one_line_item(self) -> ast.WorkflowItem | None:
        """The workflow item at the cursor if `_ITEM_LINE` takes it whole (as `one_line_rule`)."""
        text = self.text
        m = _ITEM_LINE.match(text, self.pos)
        if m is None:
            return None
        first, colon, domain, port, value, dst, proto, seps = m.groups()
        second = domain if colon else dst
        if not (_plain_name(first) and _plain_name(second)):
            return None
        nxt = _next_word(text, m.end())
        if nxt != "}" and (nxt is None or not _WORD.match(nxt) or not _plain_name(nxt)):
            return None  # the item goes on past the line (`;`, `port`, a protocol ...), or the text ends
        file, line, base = self.file, self.line, self.line_start - 1
        at = m.start(1) - base
        first_id = ast.Ident(first, Span(file, line, at, line, at + len(first)))
        at = m.start(3 if colon else 6) - base
        second_id = ast.Ident(second, Span(file, line, at, line, at + len(second)))
        end = (m.start(8) + seps.rfind(";") + 1 if seps else m.start(8)) - base
        span = Span(file, line, first_id.span.column, line, end)
        self.pos = m.end()
        self.last_end = (line, end)
        if not colon:
            proto_id = None
            if proto is not None:
                at = m.start(7) - base
                proto_id = ast.Ident(proto, Span(file, line, at, line, at + len(proto)))
            return ast.FlowDecl(first_id, second_id, proto_id, span)
        ports = None
        if port is not None:
            ports = _ports_at(value, file, line, m.start(4) - base, m.start(5) - base)
        return ast.StageDecl(first_id, second_id, ports, span)

    # -- the one-line rule ---------------------------------------------------------
    def one_line_rule(self) -> ast.RuleDecl | None:
        """The rule at the cursor if `_RULE` takes it whole (and no `;` on a later line is its)."""
        text = self.text
        m = _RULE.match(text, self.pos)
        if m is None:
            return None
        (name, action, plain, proto, src, dst, port, ports, seps) = m.groups()
        if not _plain_name(name):
            return None
        nxt = _next_word(text, m.end())
        if nxt is not None and nxt not in _STATEMENTS:
            return None  # the rule goes on past the line (`;`, `port` ...): read it token by token
        file, line, base = self.file, self.line, self.line_start - 1  # column = index - base
        start = m.start() - base
        at = m.start(1) - base
        name_id = ast.Ident(name, Span(file, line, at, line, at + len(name)))
        at = m.start(2) - base
        action_id = ast.Ident(action, Span(file, line, at, line, at + len(action)))
        proto_id = None
        if proto is not None:
            at = m.start(4) - base
            proto_id = ast.Ident(proto, Span(file, line, at, line, at + len(proto)))
        source = _endpoint_at(src, file, line, m.start(5) - base)
        target = _endpoint_at(dst, file, line, m.start(6) - base)
        if source is None or target is None:
            return None
        port_spec = None
        if port is not None:
            port_spec = _ports_at(ports, file, line, m.start(7) - base, m.start(8) - base)
        end = (m.start(9) + seps.rfind(";") + 1 if seps else m.start(9)) - base
        self.pos = m.end()
        self.last_end = (line, end)
        return ast.RuleDecl(name_id, action_id, plain is not None, proto_id, source, target, port_spec,
                            Span(file, line, start, line, end))


def _next_word(text: str, pos: int) -> str | None:
    """The word (or else the one character) that comes next after blanks and comments; None at the end."""
    at = _TRIVIA.match(text, pos).end()
    if at == len(text):
        return None
    m = _WORD.match(text, at)
    return m.group() if m else text[at]


def _endpoint_at(text: str, file: str, line: int, column: int) -> ast.Endpoint | None:
    """The endpoint `text` (as `_EP` matched it) written at `column`; None where Lark reads differently."""
    end = column + len(text)
    if text[0] not in "!{":  # one atom, the common case
        atom = _atom_at(text, file, line, column)
        if atom is None:
            return None
        return ast.Endpoint(0, (atom,), False, atom.span)
    negations = 0
    atoms = []
    for m in _EP_PART.finditer(text):
        part = m.group()
        if part == "!":
            negations += 1
        else:
            atom = _atom_at(part, file, line, column + m.start())
            if atom is None:
                return None
            atoms.append(atom)
    return ast.Endpoint(negations, tuple(atoms), text[-1] == "}", Span(file, line, column, line, end))


def _atom_at(text: str, file: str, line: int, column: int) -> ast.EndpointAtom | None:
    span = Span(file, line, column, line, column + len(text))
    if text[0] <= "9":  # digits only start a CIDR
        return ast.EndpointAtom("cidr", text, span)
    if text == "any":
        return ast.EndpointAtom("any", text, span)
    if "." in text:
        if not all(_plain_name(part) for part in text.split(".")):
            return None
    elif not _plain_name(text):
        return None
    return ast.EndpointAtom("ref", text, span)


def _ports_at(text: str, file: str, line: int, column: int, items_column: int) -> ast.PortSpec:
    """The port clause whose items `text` (as `_RULE` matched them) start at items_column."""
    if text[0] != "{" and "-" not in text:  # one port, the common case
        value = int(text)
        end = items_column + len(text)
        item = ast.PortItem(value, value, Span(file, line, items_column, line, end))
        return ast.PortSpec((item,), False, Span(file, line, column, line, end))
    items = tuple(
        ast.PortItem(int(m.group(1)), int(m.group(2) or m.group(1)),
                     Span(file, line, items_column + m.start(), line, items_column + m.end()))
        for m in _ITEM_PART.finditer(text)
    )
    return ast.PortSpec(items, text[0] == "{", Span(file, line, column, line, items_column + len(text)))
