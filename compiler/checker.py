"""Semantic checks: AST -> checked IR, or diagnostics with stable codes.

Names (domains, workflows, stages, rules) share one namespace per kind of
reference: a bare name in an endpoint is a domain, or else a workflow stage
(also reachable as `workflow.stage`). The codes below are stable; their
meaning is documented in docs/diagnostics.md.
"""

from __future__ import annotations

import bisect
import ipaddress
import re
from dataclasses import dataclass, field

from sealnet.compiler import ast
from sealnet.compiler.cubes import EVERYTHING, NOTHING, match_complement, match_intersect, match_union
from sealnet.compiler.diagnostics import Diagnostic, Note, Severity
from sealnet.compiler.ir import (
    PORTED_PROTOCOLS,
    PROTO_NUMBERS,
    Action,
    Assertion,
    AssertKind,
    Cube,
    Domain,
    Flow,
    IntervalSet,
    Match,
    Policy,
    Rule,
    Span,
    Stage,
    TeeKind,
    Workflow,
    cube_product,
    intersect,
    normalize,
    prefix_interval,
)
from sealnet.compiler.codes import (  # noqa: F401  (the codes this module reports)
    UNDEFINED_NAME,
    DUPLICATE_NAME,
    UNKNOWN_STAGE_DOMAIN,
    OVERLAPPING_NODES,
    INVALID_ADDRESS,
    PORT_OUT_OF_RANGE,
    REVERSED_PORT_RANGE,
    UNKNOWN_TEE,
    MALFORMED_MEASUREMENT,
    BAD_HEADER,
    DUPLICATE_ATTRIBUTE,
    VERSION_OUT_OF_RANGE,
    DUPLICATE_DEFAULT,
    UNKNOWN_FLOW_STAGE,
    PORTS_WITHOUT_PORTED_PROTOCOL,
    RESERVED_NAME,
    MISSING_TEE,
    UNKNOWN_CIPHER,
    DUPLICATE_CIPHER,
    DUPLICATE_RULE,
    CROSS_DOMAIN_PLAINTEXT,
    HOST_BITS_SET,
    DOMAIN_WITHOUT_NODES,
)
from sealnet.compiler.parser import STATEMENT_KEYWORDS
from sealnet.contracts.manifest import CIPHER_SUITES, DEFAULT_CIPHER_SUITE


MEASUREMENT_RE = re.compile(r"^sha384:[0-9a-f]{96}$")
RESERVED = frozenset(STATEMENT_KEYWORDS) | {
    "from", "to", "port", "tee", "nodes", "measurement", "control", "version",
    "deny", "allow", "seal", "tcp", "udp", "icmp", "any", "plaintext",
    "sealed", "never", "reachable",
}
PORT_LIMIT = 0xFFFF
_PORTED: IntervalSet = normalize((p, p) for p in PORTED_PROTOCOLS)
VERSION_LIMIT = 0xFFFFFFFF


_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_CIDR = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(?:/(3[0-2]|[12]?[0-9]))?")


def _plain_prefix(text: str) -> tuple[int, int] | None:
    """The address interval of a CIDR written the usual way (no leading zeros, no host bits).

    Such a CIDR is exactly what ipaddress accepts without a word (`_network`); anything else,
    None, goes the long way for its diagnostics. Most endpoints are such CIDRs.
    """
    m = _PLAIN_CIDR.fullmatch(text)
    if m is None:
        return None
    a, b, c, d, bits = m.groups()
    address = (int(a) << 24) | (int(b) << 16) | (int(c) << 8) | int(d)
    host = (1 << (32 - int(bits if bits is not None else 32))) - 1
    if address & host:
        return None
    return address, address | host


@dataclass
class _Context:
    file: str
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, code: str, message: str, span: Span, hint: str | None = None,
              notes: tuple[Note, ...] = ()) -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, code, message, span, hint, notes))

    def warning(self, code: str, message: str, span: Span, hint: str | None = None,
                notes: tuple[Note, ...] = ()) -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, code, message, span, hint, notes))


def check(tree: ast.PolicyFile) -> tuple[Policy | None, list[Diagnostic]]:
    """The checked policy, or None when any diagnostic is an error."""
    ctx = _Context(tree.file)
    checker = _Checker(ctx, tree)
    policy = checker.run()
    diagnostics = sorted(ctx.diagnostics, key=lambda d: (d.span.line, d.span.column, d.code))
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return None, diagnostics
    return policy, diagnostics


class _Checker:
    def __init__(self, ctx: _Context, tree: ast.PolicyFile):
        self.ctx = ctx
        self.tree = tree
        self.domains: dict[str, Domain] = {}
        self.stages: dict[str, list[Stage]] = {}  # bare name -> stages of that name
        self.qualified: dict[str, Stage] = {}
        self._endpoint_cache: dict[tuple[str, str], Match] = {}
        # A match's text -> its Match, kept only when computing it reported nothing
        # (diagnostics are reported at every use); many rules repeat a match.
        self._match_cache: dict[str, Match] = {}
        self._domains_at: dict[IntervalSet, list[Domain]] = {}  # address set -> domains it meets
        self._domain_ranges: list[tuple[int, int, int]] | None = None  # (lo, hi, domain index), by lo
        self._range_starts: list[int] = []

    # -- driver ------------------------------------------------------------
    def run(self) -> Policy | None:
        s = self.tree.statements
        header = self._header([x for x in s if isinstance(x, ast.PolicyHeader)])
        self._domains([x for x in s if isinstance(x, ast.DomainDecl)])
        workflows = self._workflows([x for x in s if isinstance(x, ast.WorkflowDecl)])
        rules = self._rules([x for x in s if isinstance(x, ast.RuleDecl)])
        default, default_span = self._default([x for x in s if isinstance(x, ast.DefaultDecl)])
        cipher, cipher_span = self._cipher([x for x in s if isinstance(x, ast.CipherDecl)])
        assertions = self._assertions([x for x in s if isinstance(x, ast.AssertDecl)])
        if header is None:
            return None
        name, version, span = header
        return Policy(
            name=name, version=version, file=self.ctx.file,
            domains=tuple(self.domains.values()), workflows=tuple(workflows),
            rules=tuple(rules), default=default, default_span=default_span,
            assertions=tuple(assertions), span=span,
            peers=tuple(d.name for d in self.domains.values() if d.control_plane),
            cipher=cipher, cipher_span=cipher_span,
        )

    # -- header and default ----------------------------------------------------
    def _header(self, headers: list[ast.PolicyHeader]) -> tuple[str, int, Span] | None:
        if not headers:
            first = self.tree.statements[0].span if self.tree.statements else Span(self.ctx.file, 1, 1, 1, 1)
            self.ctx.error(BAD_HEADER, "the policy has no header", Span(first.file, first.line, first.column, first.line, first.column + 1),
                           hint='start the file with `policy "NAME" version N`')
            return None
        for extra in headers[1:]:
            self.ctx.error(BAD_HEADER, "a second policy header", extra.span,
                           notes=(Note(headers[0].span, "the first header is here"),))
        h = headers[0]
        if h.version > VERSION_LIMIT:
            self.ctx.error(VERSION_OUT_OF_RANGE, f"version {h.version} is out of range 0..{VERSION_LIMIT}", h.version_span)
        return h.name, h.version, h.span

    def _default(self, defaults: list[ast.DefaultDecl]) -> tuple[Action, Span | None]:
        for extra in defaults[1:]:
            self.ctx.error(DUPLICATE_DEFAULT, "a second `default`", extra.span,
                           notes=(Note(defaults[0].span, "the first `default` is here"),))
        if not defaults:
            return Action.DENY, None
        return Action(defaults[0].action.name), defaults[0].span

    def _cipher(self, decls: list[ast.CipherDecl]) -> tuple[str, Span | None]:
        for extra in decls[1:]:
            self.ctx.error(DUPLICATE_CIPHER, "a second `cipher`", extra.span,
                           notes=(Note(decls[0].span, "the first `cipher` is here"),))
        if not decls:
            return DEFAULT_CIPHER_SUITE, None
        suite = decls[0].suite
        if suite.name not in CIPHER_SUITES:
            self.ctx.error(UNKNOWN_CIPHER, f"unknown cipher suite `{suite.name}`", suite.span,
                           hint="write one of: " + ", ".join(CIPHER_SUITES))
            return DEFAULT_CIPHER_SUITE, decls[0].span
        return suite.name, decls[0].span

    def _check_name(self, ident: ast.Ident, what: str) -> None:
        if ident.name in RESERVED:
            self.ctx.error(RESERVED_NAME, f"`{ident.name}` is a keyword and cannot name a {what}", ident.span)

    # -- domains ----------------------------------------------------------
    def _domains(self, decls: list[ast.DomainDecl]) -> None:
        owner: list[tuple[ipaddress.IPv4Network, str, Span]] = []
        for decl in decls:
            self._check_name(decl.name, "domain")
            if decl.name.name in self.domains:
                self.ctx.error(DUPLICATE_NAME, f"domain `{decl.name.name}` is defined twice", decl.name.span,
                               notes=(Note(self.domains[decl.name.name].span, "first defined here"),))
                continue
            tee: TeeKind | None = None
            tee_span: Span | None = None
            prefixes: list[ipaddress.IPv4Network] = []
            measurements: list[str] = []
            control: str | None = None
            for attr in decl.attrs:
                if isinstance(attr, ast.TeeAttr):
                    if tee_span is not None:
                        self.ctx.error(DUPLICATE_ATTRIBUTE, "`tee` is given twice", attr.span,
                                       notes=(Note(tee_span, "first given here"),))
                        continue
                    tee_span = attr.span
                    try:
                        tee = TeeKind(attr.kind.name)
                    except ValueError:
                        kinds = ", ".join(k.value for k in TeeKind)
                        self.ctx.error(UNKNOWN_TEE, f"unknown TEE kind `{attr.kind.name}`", attr.kind.span,
                                       hint=f"the kinds are: {kinds}")
                elif isinstance(attr, ast.NodesAttr):
                    for cidr in attr.cidrs:
                        net = self._network(cidr)
                        if net is None:
                            continue
                        clashing: set[str] = set()
                        for other, other_domain, other_span in owner:
                            if other_domain not in clashing and other_domain != decl.name.name and net.overlaps(other):
                                clashing.add(other_domain)
                                self.ctx.error(
                                    OVERLAPPING_NODES,
                                    f"nodes {net} of `{decl.name.name}` overlap {other} of `{other_domain}`",
                                    cidr.span, hint="every address belongs to at most one domain",
                                    notes=(Note(other_span, f"`{other_domain}` has {other} here"),))
                        owner.append((net, decl.name.name, cidr.span))
                        prefixes.append(net)
                elif isinstance(attr, ast.MeasurementAttr):
                    if not MEASUREMENT_RE.match(attr.value):
                        self.ctx.error(MALFORMED_MEASUREMENT, f'malformed measurement "{attr.value}"', attr.value_span,
                                       hint='write "sha384:" followed by 96 lowercase hex digits')
                    else:
                        measurements.append(attr.value)
                elif isinstance(attr, ast.ControlAttr):
                    if control is not None:
                        self.ctx.error(DUPLICATE_ATTRIBUTE, "`control` is given twice", attr.span)
                        continue
                    control = self._control(attr)
            if tee_span is None:
                self.ctx.error(MISSING_TEE, f"domain `{decl.name.name}` does not say its TEE kind", decl.name.span,
                               hint="add `tee sev-snp`, `tee tdx`, `tee sim` or `tee none`")
            if not prefixes and not any(isinstance(a, ast.NodesAttr) for a in decl.attrs):
                self.ctx.warning(DOMAIN_WITHOUT_NODES, f"domain `{decl.name.name}` has no nodes", decl.name.span,
                                 hint="rules naming it match nothing; add `nodes CIDR`")
            self.domains[decl.name.name] = Domain(
                id=len(self.domains) + 1, name=decl.name.name, tee=tee or TeeKind.NONE,
                prefixes=tuple(prefixes), measurements=tuple(measurements),
                control_plane=control, span=decl.span)

    def _network(self, ident: ast.Ident) -> ipaddress.IPv4Network | None:
        try:
            net = ipaddress.IPv4Network(ident.name, strict=False)
        except (ipaddress.AddressValueError, ipaddress.NetmaskValueError, ValueError) as exc:
            self.ctx.error(INVALID_ADDRESS, f"invalid address or CIDR `{ident.name}`: {exc}", ident.span)
            return None
        if net.network_address != ipaddress.IPv4Address(ident.name.split("/")[0]):
            self.ctx.warning(HOST_BITS_SET, f"`{ident.name}` has host bits set; it means {net}", ident.span,
                             hint=f"write {net}")
        return net

    def _control(self, attr: ast.ControlAttr) -> str | None:
        if "/" in attr.address.name:
            self.ctx.error(INVALID_ADDRESS, "a control-plane address is one host, not a CIDR", attr.address.span)
            return None
        try:
            addr = ipaddress.IPv4Address(attr.address.name)
        except ipaddress.AddressValueError as exc:
            self.ctx.error(INVALID_ADDRESS, f"invalid address `{attr.address.name}`: {exc}", attr.address.span)
            return None
        if not 1 <= attr.port <= PORT_LIMIT:
            self.ctx.error(PORT_OUT_OF_RANGE, f"port {attr.port} is out of range 1..{PORT_LIMIT}", attr.port_span)
            return None
        return f"{addr}:{attr.port}"

    # -- workflows --------------------------------------------------------------
    def _workflows(self, decls: list[ast.WorkflowDecl]) -> list[Workflow]:
        seen: dict[str, Span] = {}
        pending: list[tuple[ast.WorkflowDecl, list[Stage]]] = []
        for decl in decls:
            self._check_name(decl.name, "workflow")
            if decl.name.name in seen:
                self.ctx.error(DUPLICATE_NAME, f"workflow `{decl.name.name}` is defined twice", decl.name.span,
                               notes=(Note(seen[decl.name.name], "first defined here"),))
                continue
            seen[decl.name.name] = decl.name.span
            stages: list[Stage] = []
            stage_names: set[str] = set()  # of `stages`: a scan of the list per stage is quadratic
            for item in decl.items:
                if not isinstance(item, ast.StageDecl):
                    continue
                self._check_name(item.name, "stage")
                if item.name.name in stage_names:
                    self.ctx.error(DUPLICATE_NAME, f"stage `{item.name.name}` is defined twice in `{decl.name.name}`", item.name.span)
                    continue
                if item.name.name in self.domains:
                    self.ctx.error(DUPLICATE_NAME, f"stage `{item.name.name}` has the name of a domain", item.name.span,
                                   hint="a bare name in a rule would be ambiguous; rename the stage",
                                   notes=(Note(self.domains[item.name.name].span, "the domain is here"),))
                    continue
                ports = self._ports(item.ports) if item.ports else ()
                if item.domain.name not in self.domains:
                    self.ctx.error(UNKNOWN_STAGE_DOMAIN, f"stage `{item.name.name}` is placed in unknown domain `{item.domain.name}`",
                                   item.domain.span, hint=self._suggest(item.domain.name, self.domains))
                    continue
                stage = Stage(decl.name.name, item.name.name, item.domain.name, ports, item.span)
                stages.append(stage)
                stage_names.add(stage.name)
                self.stages.setdefault(stage.name, []).append(stage)
                self.qualified[stage.qualified_name] = stage
            pending.append((decl, stages))
        workflows = []
        for decl, stages in pending:
            flows = []
            by_name = {s.name: s for s in stages}
            for item in decl.items:
                if not isinstance(item, ast.FlowDecl):
                    continue
                ends = []
                for ref in (item.src, item.dst):
                    if ref.name not in by_name:
                        self.ctx.error(UNKNOWN_FLOW_STAGE, f"`{ref.name}` is not a stage of workflow `{decl.name.name}`",
                                       ref.span, hint=self._suggest(ref.name, by_name))
                    else:
                        ends.append(by_name[ref.name])
                if len(ends) != 2:
                    continue
                proto = PROTO_NUMBERS[item.proto.name] if item.proto else None
                match = self._flow_match(ends[0], ends[1], proto, item)
                flows.append(Flow(decl.name.name, ends[0].name, ends[1].name, proto, item.span, match))
            workflows.append(Workflow(decl.name.name, tuple(stages), tuple(flows), decl.span))
        return workflows

    def _flow_match(self, src: Stage, dst: Stage, proto: int | None, item: ast.FlowDecl) -> Match:
        protos: IntervalSet = ((proto, proto),) if proto is not None else ((0, 0xFF),)
        if dst.ports:
            if proto is not None and proto not in PORTED_PROTOCOLS:
                self.ctx.error(PORTS_WITHOUT_PORTED_PROTOCOL,
                               f"stage `{dst.name}` has a port but the flow's protocol has none", item.span)
            protos = intersect(protos, _PORTED)
        cube = cube_product(self.domains[src.domain].addresses, self.domains[dst.domain].addresses,
                            protos, dst.ports or ((0, PORT_LIMIT),))
        return Match(() if cube.is_empty() else (cube,))

    # -- ports --------------------------------------------------------------
    def _ports(self, spec: ast.PortSpec) -> IntervalSet:
        intervals = []
        for item in spec.items:
            bad = False
            for value in {item.lo, item.hi}:
                if value > PORT_LIMIT:
                    self.ctx.error(PORT_OUT_OF_RANGE, f"port {value} is out of range 0..{PORT_LIMIT}", item.span)
                    bad = True
            if not bad and item.lo > item.hi:
                self.ctx.error(REVERSED_PORT_RANGE, f"port range {item.lo}-{item.hi} is reversed", item.span,
                               hint=f"write {item.hi}-{item.lo}")
                bad = True
            if not bad:
                intervals.append((item.lo, item.hi))
        if len(intervals) == 1:  # one port or range (lo <= hi): already normal
            return (intervals[0],)
        return normalize(intervals)

    # -- endpoints -------------------------------------------------------------
    def _endpoint(self, ep: ast.Endpoint, role: str) -> Match:
        # str(ep), without its join for the common one plain atom
        text = ep.atoms[0].text if not ep.is_set and not ep.negations else str(ep)
        key = (text, role)
        cached = self._endpoint_cache.get(key)
        if cached is not None:
            return cached
        reported = len(self.ctx.diagnostics)
        parts = [self._atom(atom, role) for atom in ep.atoms]
        result = match_union(*parts)
        if ep.negated:
            result = match_complement(result)
        if len(self.ctx.diagnostics) == reported:  # errors are reported at every use
            self._endpoint_cache[key] = result
        return result

    def _atom(self, atom: ast.EndpointAtom, role: str) -> Match:
        if atom.kind == "any":
            return EVERYTHING
        if atom.kind == "cidr":
            interval = _plain_prefix(atom.text)
            if interval is not None:
                return Match((self._addr_cube(role, (interval,)),))
            net = self._network(ast.Ident(atom.text, atom.span))
            if net is None:
                return NOTHING
            return Match((self._addr_cube(role, (prefix_interval(net),)),))
        parts = atom.ref_parts
        if len(parts) == 1 and parts[0] in self.domains:
            return Match((self._addr_cube(role, self.domains[parts[0]].addresses),))
        stage = self._stage(atom)
        if stage is None:
            return NOTHING
        addrs = self.domains[stage.domain].addresses
        if role == "dst" and stage.ports:
            ported = _PORTED
            return Match((Cube(dst=addrs, proto=ported, dport=stage.ports),))
        return Match((self._addr_cube(role, addrs),))

    def _stage(self, atom: ast.EndpointAtom) -> Stage | None:
        parts = atom.ref_parts
        if len(parts) == 2:
            stage = self.qualified.get(atom.text)
            if stage is None:
                self.ctx.error(UNDEFINED_NAME, f"`{atom.text}` is not a workflow stage", atom.span,
                               hint=self._suggest(atom.text, self.qualified))
            return stage
        candidates = self.stages.get(parts[0], [])
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            names = ", ".join(f"`{s.qualified_name}`" for s in candidates)
            self.ctx.error(UNDEFINED_NAME, f"`{atom.text}` is ambiguous: {names}", atom.span,
                           hint="qualify the stage with its workflow: WORKFLOW.STAGE")
            return None
        known = {**self.domains, **self.stages}
        self.ctx.error(UNDEFINED_NAME, f"`{atom.text}` is not a domain or workflow stage", atom.span,
                       hint=self._suggest(atom.text, known))
        return None

    @staticmethod
    def _addr_cube(role: str, addrs: IntervalSet) -> Cube:
        return Cube(src=addrs) if role == "src" else Cube(dst=addrs)

    @staticmethod
    def _suggest(name: str, known) -> str | None:
        import difflib

        close = difflib.get_close_matches(name, list(known), n=1)
        return f"did you mean `{close[0]}`?" if close else None

    def _match(self, proto_id: ast.Ident | None, src: ast.Endpoint, dst: ast.Endpoint,
               ports: ast.PortSpec | None, span: Span, text: str | None = None) -> Match:
        key = text if text is not None else ast.match_text(proto_id, src, dst, ports)
        cached = self._match_cache.get(key)
        if cached is not None:
            return cached
        reported = len(self.ctx.diagnostics)
        match = self._compute_match(proto_id, src, dst, ports)
        if len(self.ctx.diagnostics) == reported:
            self._match_cache[key] = match
        return match

    def _compute_match(self, proto_id: ast.Ident | None, src: ast.Endpoint, dst: ast.Endpoint,
                       ports: ast.PortSpec | None) -> Match:
        match = match_intersect(self._endpoint(src, "src"), self._endpoint(dst, "dst"))
        restriction = Cube()
        if proto_id is not None:
            p = PROTO_NUMBERS[proto_id.name]
            restriction = Cube(proto=((p, p),))
        if ports is not None:
            if proto_id is not None and PROTO_NUMBERS[proto_id.name] not in PORTED_PROTOCOLS:
                self.ctx.error(PORTS_WITHOUT_PORTED_PROTOCOL, f"`{proto_id.name}` has no ports", ports.span,
                               hint="remove the port clause, or use tcp or udp")
            proto = restriction.proto if proto_id is not None else _PORTED
            restriction = Cube(proto=proto, dport=self._ports(ports))
        return match_intersect(match, Match((restriction,)))

    # -- rules and assertions ------------------------------------------------------
    def _rules(self, decls: list[ast.RuleDecl]) -> list[Rule]:
        rules: list[Rule] = []
        names: dict[str, Span] = {}
        texts: dict[tuple[str, bool, str], ast.RuleDecl] = {}
        for decl in decls:
            self._check_name(decl.name, "rule")
            if decl.name.name in names:
                self.ctx.error(DUPLICATE_NAME, f"rule `{decl.name.name}` is defined twice", decl.name.span,
                               notes=(Note(names[decl.name.name], "first defined here"),))
            names.setdefault(decl.name.name, decl.name.span)
            text = decl.match_text()
            key = (decl.action.name, decl.plaintext, text)
            if key in texts:
                first = texts[key]
                self.ctx.warning(DUPLICATE_RULE, f"rule `{decl.name.name}` repeats rule `{first.name.name}`",
                                 decl.span, hint="remove one of them",
                                 notes=(Note(first.span, f"`{first.name.name}` is here"),))
            texts.setdefault(key, decl)
            match = self._match(decl.proto, decl.src, decl.dst, decl.ports, decl.span, text)
            action = Action(decl.action.name)
            rule = Rule(len(rules), decl.name.name, action, match, decl.span, decl.plaintext, text)
            if action is Action.ALLOW and not decl.plaintext:
                self._warn_cross_domain_plaintext(rule)
            rules.append(rule)
        return rules

    def _warn_cross_domain_plaintext(self, rule: Rule) -> None:
        for cube in rule.match.cubes:
            srcs = self._domains_meeting(cube.src)
            dsts = self._domains_meeting(cube.dst)
            pair = next(((a, b) for a in srcs for b in dsts if a.name != b.name), None)
            if pair is not None:
                a, b = pair
                self.ctx.warning(
                    CROSS_DOMAIN_PLAINTEXT,
                    f"rule `{rule.name}` passes plaintext from `{a.name}` to `{b.name}` over an untrusted network",
                    rule.span, hint="use `seal`, or write `allow plaintext` if plaintext is intended")
                return

    def _domains_meeting(self, addrs: IntervalSet) -> list[Domain]:
        """The domains (in declaration order) with an address in addrs; rules repeat their sets."""
        found = self._domains_at.get(addrs)
        if found is None:
            found = self._search_domains(addrs)
            self._domains_at[addrs] = found
        return found

    def _search_domains(self, addrs: IntervalSet) -> list[Domain]:
        domains = list(self.domains.values())
        if self._domain_ranges is None:
            ranges = sorted((lo, hi, i) for i, d in enumerate(domains) for lo, hi in d.addresses)
            disjoint = all(a[1] < b[0] for a, b in zip(ranges, ranges[1:]))
            # Overlapping nodes (an error, reported) leave only the scan of every domain.
            self._domain_ranges = ranges if disjoint else []
            self._range_starts = [r[0] for r in ranges]
        if not self._domain_ranges and any(d.addresses for d in domains):
            return [d for d in domains if intersect(addrs, d.addresses)]
        hits: set[int] = set()
        ranges, starts = self._domain_ranges, self._range_starts
        for lo, hi in addrs:  # disjoint ranges sorted by start are sorted by end too
            k = max(bisect.bisect_right(starts, lo) - 1, 0)
            while k < len(ranges) and ranges[k][0] <= hi:
                if ranges[k][1] >= lo:
                    hits.add(ranges[k][2])
                k += 1
        return [domains[i] for i in sorted(hits)]

    def _assertions(self, decls: list[ast.AssertDecl]) -> list[Assertion]:
        out = []
        for decl in decls:
            match = self._match(decl.proto, decl.src, decl.dst, decl.ports, decl.span)
            out.append(Assertion(AssertKind(decl.kind.name), match, decl.span, decl.match_text()))
        return out
