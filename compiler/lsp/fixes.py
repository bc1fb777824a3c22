"""Quick fixes for verifier findings, each offered only once `diff` proves what it claims.

- a redundant rule: delete it; claim: no packet's decision changes;
- a shadowed rule: move it above the first rule that blocks it; claim: only
  packets the moved rule matches change, and they now get its action;
- a blocked workflow flow: add a rule for it (seal across domains, allow
  within one) above the first rule that touches the flow; claim: only packets
  the new rule matches change, and they now pass as the flow needs.

The edited text is compiled from scratch (parse and check) and compared with
the verified policy by `diff`; a fix whose comparison is bounded (truncated)
or shows anything else is dropped, never offered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator

from sealnet.compiler import ast
from sealnet.compiler.checker import check
from sealnet.compiler.cubes import match_intersect
from sealnet.compiler.diagnostics import Severity
from sealnet.compiler.ir import Action, Policy
from sealnet.compiler.lsp.document import Analysis, FrontEnd
from sealnet.compiler.lsp.verification import Comparison, FindingView, compare

# Fixes proved per verification run; the rest of a long list waits for the next run.
FIX_LIMIT = 24


@dataclass(frozen=True)
class Edit:
    """Replace 0-based [start, end) with `text` (LSP coordinates)."""

    start_line: int
    start_character: int
    end_line: int
    end_character: int
    text: str


@dataclass(frozen=True)
class Fix:
    title: str
    code: str  # the finding's code
    finding_line: int  # 1-based line of the finding it fixes
    edits: tuple[Edit, ...]
    preferred: bool = True


def apply(text: str, edits: tuple[Edit, ...]) -> str:
    """The text with non-overlapping edits applied."""
    lines = text.split("\n")
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, character: int) -> int:
        if line >= len(lines):
            return len(text)
        return starts[line] + min(character, len(lines[line]))

    out = text
    for e in sorted(edits, key=lambda e: (e.start_line, e.start_character), reverse=True):
        out = out[:offset(e.start_line, e.start_character)] + e.text + out[offset(e.end_line, e.end_character):]
    return out


# -- where statements are ---------------------------------------------------------------
def _rule_decl(analysis: Analysis, name: str) -> ast.RuleDecl | None:
    for chunk in analysis.chunks:
        stmt = chunk.parsed[0]
        if isinstance(stmt, ast.RuleDecl) and stmt.name.name == name:
            return chunk.statement  # type: ignore[return-value]
    return None


_TRAILER = re.compile(r"^[\s;]*(#.*)?$")


def _whole_lines(analysis: Analysis, decl: ast.Statement) -> tuple[int, int] | None:
    """0-based first and last line of a statement that has its lines to itself."""
    lines = analysis.text.split("\n")
    first, last = decl.span.line - 1, decl.span.end_line - 1
    if last >= len(lines) or lines[first][:decl.span.column - 1].strip():
        return None
    if not _TRAILER.match(lines[last][decl.span.end_column - 1:]):
        return None
    return first, last


def _delete_lines(first: int, last: int) -> Edit:
    return Edit(first, 0, last + 1, 0, "")


# -- candidates ------------------------------------------------------------------------------
def proved_fixes(front_end: FrontEnd, analysis: Analysis, policy: Policy, findings: tuple[FindingView, ...],
                 limit: int = FIX_LIMIT, stop: Callable[[], bool] = lambda: False) -> Iterator[Fix]:
    """Fixes for the findings, each proved by diff against `policy`, at most `limit`, until `stop()`."""
    offered = 0
    for finding in findings:
        if offered >= limit:
            return
        for fix, claim in _candidates(analysis, policy, finding):
            if stop():
                return
            new = compile_text_of(front_end, apply(analysis.text, fix.edits))
            if new is None:
                continue
            title = claim(compare(policy, new))
            if title is not None:
                offered += 1
                yield Fix(f"{fix.title} ({title})", fix.code, fix.finding_line, fix.edits, fix.preferred)


def compile_text_of(front_end: FrontEnd, text: str) -> Policy | None:
    """The checked policy of a variant of the document's text, or None if it has errors."""
    variant = front_end.parse_only(text)
    if variant.syntax:
        return None
    policy, diagnostics = check(variant.tree)
    if policy is None or any(d.severity is Severity.ERROR for d in diagnostics):
        return None
    return policy


Claim = Callable[[Comparison], str | None]


def _candidates(analysis: Analysis, policy: Policy, finding: FindingView) -> Iterator[tuple[Fix, Claim]]:
    if finding.kind == "redundant" and finding.rules:
        yield from _delete(analysis, finding)
    elif finding.kind == "shadowed" and len(finding.rules) > 1:
        yield from _move(analysis, policy, finding)
    elif finding.kind == "workflow-blocked":
        yield from _add_for_flow(analysis, policy, finding)


def _delete(analysis: Analysis, finding: FindingView) -> Iterator[tuple[Fix, Claim]]:
    name = finding.rules[0]
    decl = _rule_decl(analysis, name)
    lines = _whole_lines(analysis, decl) if decl else None
    if lines is None:
        return

    def claim(result: Comparison) -> str | None:
        if result.decided and not result.changes:
            return "proved by diff: no packet's decision changes"
        return None

    yield Fix(f"Delete redundant rule `{name}`", finding.code, finding.span.line,
              (_delete_lines(*lines),)), claim


def _move(analysis: Analysis, policy: Policy, finding: FindingView) -> Iterator[tuple[Fix, Claim]]:
    name, blockers = finding.rules[0], finding.rules[1:]
    rules = {r.name: r for r in policy.rules}
    if name not in rules or not all(b in rules for b in blockers):
        return
    first = min(blockers, key=lambda b: rules[b].index)
    decl, target = _rule_decl(analysis, name), _rule_decl(analysis, first)
    lines = _whole_lines(analysis, decl) if decl else None
    if lines is None or target is None or _whole_lines(analysis, target) is None:
        return
    source_lines = analysis.text.split("\n")
    moved = "\n".join(source_lines[lines[0]:lines[1] + 1]) + "\n"
    action = rules[name].action.value
    edits = (Edit(target.span.line - 1, 0, target.span.line - 1, 0, moved), _delete_lines(*lines))

    def claim(result: Comparison) -> str | None:
        if result.decided and result.changes and all(c.new_rule == name and c.new_action == action
                                                     for c in result.changes):
            return f"proved by diff: only packets `{name}` matches change, now {action}{_count(result)}"
        return None

    yield Fix(f"Move `{name}` above `{first}`", finding.code, finding.span.line, edits), claim


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _add_for_flow(analysis: Analysis, policy: Policy, finding: FindingView) -> Iterator[tuple[Fix, Claim]]:
    found = _flow_decl(analysis, finding)
    if found is None:
        return
    workflow, flow = found
    stages = {i.name.name: i for i in workflow.items if isinstance(i, ast.StageDecl)}
    src, dst = stages.get(flow.src.name), stages.get(flow.dst.name)
    ir_flow = next((f for w in policy.workflows if w.name == workflow.name.name for f in w.flows
                    if f.span == flow.span), None)
    if src is None or dst is None or ir_flow is None:
        return
    action = Action.SEAL if src.domain.name != dst.domain.name else Action.ALLOW
    name = _fresh_name(policy, f"{workflow.name.name}_{flow.src.name}_to_{flow.dst.name}")
    proto = f"{flow.proto.name} " if flow.proto else ""
    wf = workflow.name.name
    text = f"rule {name}: {action.value} {proto}from {wf}.{flow.src.name} to {wf}.{flow.dst.name}"
    touching = [r for r in policy.rules if match_intersect(r.match, ir_flow.match).cubes]
    if touching:
        anchor = touching[0].span
        indent = analysis.text.split("\n")[anchor.line - 1][:anchor.column - 1]
        edit = Edit(anchor.line - 1, 0, anchor.line - 1, 0, f"{indent}{text}\n")
    else:
        edit = _append_rule(analysis, policy, text)

    def claim(result: Comparison) -> str | None:
        if result.decided and result.changes and all(c.new_rule == name and c.new_action == action.value
                                                     for c in result.changes):
            return f"proved by diff: only the flow's packets change, now {action.value}{_count(result)}"
        return None

    yield Fix(f"Add rule `{name}` ({action.value}) for flow {wf}: {flow.src.name} -> {flow.dst.name}",
              finding.code, finding.span.line, (edit,)), claim


def _count(result: Comparison) -> str:
    return f" ({result.packets:,} packets)" if result.packets is not None else ""


def _flow_decl(analysis: Analysis, finding: FindingView) -> tuple[ast.WorkflowDecl, ast.FlowDecl] | None:
    workflow = analysis.statement_at(finding.span.line)
    if not isinstance(workflow, ast.WorkflowDecl):
        return None
    for item in workflow.items:
        if isinstance(item, ast.FlowDecl) and item.span == finding.span:
            return workflow, item
    return None


def _fresh_name(policy: Policy, base: str) -> str:
    base = "_".join(_NAME.findall(base)) or "flow"
    taken = {r.name for r in policy.rules} | {d.name for d in policy.domains}
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def _append_rule(analysis: Analysis, policy: Policy, text: str) -> Edit:
    """After the last rule; with no rule, before `default`, or at the end."""
    if policy.rules:
        last = policy.rules[-1].span
        return Edit(last.end_line, 0, last.end_line, 0, text + "\n")
    if policy.default_span is not None:
        line = policy.default_span.line - 1
        return Edit(line, 0, line, 0, text + "\n")
    lines = analysis.text.split("\n")
    tail = "" if analysis.text.endswith("\n") or not analysis.text else "\n"
    return Edit(len(lines), 0, len(lines), 0, tail + text + "\n")
