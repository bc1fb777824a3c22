"""Hover: what a name or a rule stands for, in addresses, protocols and ports.

A domain, stage or workflow is expanded from its declaration (no solver, no
full check: it answers on a file with errors elsewhere). A rule shows its
action and the packets it decides that no earlier rule decides, computed by
cube subtraction over the rules that share its address buckets, or, when the
verifier found it never decides a packet, the rules that take them first.
"""

from __future__ import annotations

import ipaddress

from sealnet.compiler import ast
from sealnet.compiler.cubes import match_subtract
from sealnet.compiler.explain import cube_row, ports_text
from sealnet.compiler.ir import PORTED_PROTOCOLS, PROTO_NAMES, Match, Policy, Rule, normalize
from sealnet.compiler.lsp import symbols
from sealnet.compiler.lsp.convert import contains
from sealnet.compiler.lsp.state import DocumentState, Verified, relocate
from sealnet.compiler.lsp.verification import PROVED, REFUTED
from sealnet.compiler.regions import RuleIndex

# Bounds on what a hover lists and computes: it must answer at once.
ROWS_SHOWN = 8
CUBE_BUDGET = 256
_NEVER_DECIDES = ("shadowed", "redundant", "unreachable")


def hover_text(state: DocumentState, line: int, character: int) -> str | None:
    analysis = state.analysis
    occurrence = symbols.at(analysis, line, character)
    decls = symbols.declarations(analysis)
    if occurrence is not None and occurrence.symbol.kind != symbols.RULE:
        return _symbol_text(occurrence.symbol, decls)
    stmt = analysis.statement_at(line + 1)
    if stmt is None:
        return None
    ports = _ports_under(stmt, line, character)
    if ports is not None:
        return _ports_text(ports, getattr(stmt, "proto", None))
    if isinstance(stmt, ast.RuleDecl):
        return _rule_text(state, stmt)
    if isinstance(stmt, ast.AssertDecl):
        return _property_text(state, stmt.span, f"assert {stmt.kind.name} {stmt.match_text()}")
    if isinstance(stmt, ast.WorkflowDecl):
        for item in stmt.items:
            if isinstance(item, ast.FlowDecl) and contains(item.span, line, character):
                return _property_text(state, item.span, f"flow {stmt.name.name}: {item.src.name} -> {item.dst.name}")
        return _symbol_text(symbols.Symbol(symbols.WORKFLOW, (stmt.name.name,)), decls)
    if isinstance(stmt, ast.DomainDecl):
        return _symbol_text(symbols.Symbol(symbols.DOMAIN, (stmt.name.name,)), decls)
    return None


# -- names ---------------------------------------------------------------------------------------
def _nodes(decl: ast.DomainDecl) -> list[str]:
    out = []
    for attr in decl.attrs:
        if isinstance(attr, ast.NodesAttr):
            for cidr in attr.cidrs:
                try:
                    out.append(str(ipaddress.IPv4Network(cidr.name, strict=False)))
                except ValueError:
                    out.append(f"{cidr.name} (invalid)")
    return out


def _domain_lines(decl: ast.DomainDecl) -> list[str]:
    tee = next((a.kind.name for a in decl.attrs if isinstance(a, ast.TeeAttr)), "not given")
    nodes = _nodes(decl)
    lines = [f"**domain `{decl.name.name}`** (tee {tee})", "",
             f"nodes: {', '.join(nodes) if nodes else 'none (rules naming it match nothing)'}"]
    for attr in decl.attrs:
        if isinstance(attr, ast.ControlAttr):
            lines.append(f"control plane: {attr.address.name}:{attr.port}")
        if isinstance(attr, ast.MeasurementAttr):
            lines.append(f"measurement: `{attr.value[:23]}…`")
    return lines


def _stage_ports(stage: ast.StageDecl) -> str:
    if stage.ports is None:
        return "any port, any protocol"
    return _port_list(stage.ports) + " (tcp, udp)"


def _symbol_text(symbol: symbols.Symbol, decls: symbols.Declarations) -> str | None:
    if symbol.kind == symbols.DOMAIN and symbol.key[0] in decls.domains:
        return "\n".join(_domain_lines(decls.domains[symbol.key[0]]))
    if symbol.kind == symbols.STAGE and symbol.key in decls.stages:
        stage = decls.stages[symbol.key]  # type: ignore[index]
        domain = decls.domains.get(stage.domain.name)
        nodes = ", ".join(_nodes(domain)) if domain else f"unknown domain `{stage.domain.name}`"
        return "\n".join([f"**stage `{symbol.qualified}`** in domain `{stage.domain.name}`", "",
                          f"nodes: {nodes}", f"as a destination: {_stage_ports(stage)}"])
    if symbol.kind == symbols.WORKFLOW and symbol.key[0] in decls.workflows:
        wf = decls.workflows[symbol.key[0]]
        lines = [f"**workflow `{wf.name.name}`**", ""]
        for item in wf.items:
            if isinstance(item, ast.StageDecl):
                lines.append(f"- stage `{item.name.name}` in `{item.domain.name}`, {_stage_ports(item)}")
            else:
                proto = item.proto.name if item.proto else "any protocol"
                lines.append(f"- flow `{item.src.name}` -> `{item.dst.name}` ({proto})")
        return "\n".join(lines)
    return None


# -- ports ---------------------------------------------------------------------------------------
def _ports_under(stmt: ast.Statement, line: int, character: int) -> ast.PortSpec | None:
    spec = getattr(stmt, "ports", None)
    if isinstance(spec, ast.PortSpec) and contains(spec.span, line, character):
        return spec
    if isinstance(stmt, ast.WorkflowDecl):
        for item in stmt.items:
            if isinstance(item, ast.StageDecl) and item.ports and contains(item.ports.span, line, character):
                return item.ports
    return None


def _port_list(spec: ast.PortSpec) -> str:
    intervals = normalize((i.lo, i.hi) for i in spec.items if i.lo <= i.hi)
    count = sum(hi - lo + 1 for lo, hi in intervals)
    return f"destination port{'s' if count != 1 else ''} {ports_text(intervals)} ({count} port{'s' if count != 1 else ''})"


def _ports_text(spec: ast.PortSpec, proto: ast.Ident | None) -> str:
    protos = proto.name if proto is not None else ", ".join(PROTO_NAMES[p] for p in PORTED_PROTOCOLS)
    return f"**{_port_list(spec)}**\n\nprotocols: {protos}"


# -- rules and properties --------------------------------------------------------------------------
def _rule_text(state: DocumentState, decl: ast.RuleDecl) -> str:
    action = decl.action.name + (" plaintext" if decl.plaintext else "")
    head = [f"**rule `{decl.name.name}`**: {action} — `{decl.match_text()}`", ""]
    verified = state.verified
    rule = None
    if verified is not None:
        rule = next((r for r in verified.policy.rules if r.name == decl.name.name), None)
    if rule is None or rule.source_text != decl.match_text() or rule.action.value != decl.action.name:
        return "\n".join(head + ["_verification pending_"])
    blocked = [f for f in verified.verdict.findings if f.kind in _NEVER_DECIDES and f.rules[:1] == (rule.name,)
               and relocate(f.span, verified.analysis, state.analysis) is not None]
    if blocked:
        first = blocked[0]
        by = ", ".join(f"`{r}`" for r in first.rules[1:6]) or "the rules after it and the default"
        return "\n".join(head + [f"{first.kind}: decides nothing that is not already decided; first matched by {by}",
                                 "", first.message])
    rows, complete = _decides(verified, rule)
    lines = head + ["decides (what no earlier rule decides):", "",
                    "| source | destination | protocol | port |", "|---|---|---|---|"]
    for row in rows[:ROWS_SHOWN]:
        lines.append(f"| {row['src']} | {row['dst']} | {row['proto']} | {row['dport']} |")
    if len(rows) > ROWS_SHOWN:
        lines.append(f"\n… and {len(rows) - ROWS_SHOWN} more")
    if not complete:
        lines.append("\n(earlier rules cut it into too many pieces to list exactly; shown before some of them)")
    return "\n".join(lines)


def _decides(verified: Verified, rule: Rule) -> tuple[list[dict[str, str]], bool]:
    region, complete = decided_region(verified.policy, verified.index, rule)
    return [cube_row(c) for c in region.cubes], complete


def decided_region(policy: Policy, index: RuleIndex, rule: Rule) -> tuple[Match, bool]:
    """The packets `rule` decides: its match less every earlier rule's (only rules sharing its buckets).

    Exact when the second value is True; past CUBE_BUDGET pieces the subtraction
    stops and the region is larger than what the rule decides.
    """
    remaining: Match = rule.match
    for i in index.candidates(rule.match):
        if i >= rule.index:
            break
        cut = match_subtract(remaining, policy.rules[i].match)
        if len(cut.cubes) > CUBE_BUDGET:
            return remaining, False
        remaining = cut
    return remaining, True


def _property_text(state: DocumentState, span, text: str) -> str:
    verified = state.verified
    head = [f"**{text}**", ""]
    if verified is None:
        return "\n".join(head + ["_verification pending_"])
    for prop in verified.verdict.properties:
        if relocate(prop.span, verified.analysis, state.analysis) == span:
            if prop.status == PROVED:
                return "\n".join(head + ["proved for every packet (Z3)"])
            if prop.status == REFUTED:
                return "\n".join(head + [f"refuted: {prop.witness or ''}", "", prop.reason or ""])
            return "\n".join(head + [f"unknown: {prop.reason or 'not decided'}"])
    return "\n".join(head + ["_verification pending_"])
