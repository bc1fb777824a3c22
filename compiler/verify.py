"""The verifier: anomalies, assertions, workflow checks (Z3 over the checked IR).

Definitions (a packet is well formed: protocols without ports carry port 0):
- A rule *decides* a packet when it is the first rule that matches it.
- shadowed: the rule decides no packet, and every packet it matches is
  decided by earlier rules with another action (Al-Shaer & Hamed).
- redundant: removing the rule changes no decision: either every packet it
  matches is decided earlier with the same action, or the packets it decides
  would be decided with the same action by the later rules or the default.
- unreachable: the rule decides no packet and the blocking earlier rules
  disagree (some with its action, some not), or it matches no packet at all
  (Batfish's filterLineReachability); the blocking rules are named.
- correlated: an earlier rule with another action overlaps it partially
  (each matches a packet the other does not).
- generalization: it matches every packet of an earlier rule with another
  action, and more.
- assertion-failed: `sealed` (a described packet passes in plaintext),
  `never` (one passes), `reachable` (none passes); asserts that hold are proved.
- workflow-blocked: a flow none of whose packets passes, or a flow across
  domains some of whose packets pass in plaintext.
- over-permissive: for a pair of different domains, a packet from one to the
  other that passes and that no workflow flow describes (addresses in no
  domain are not "cross-domain" here: they are the rules' own business).

Scale: rules are filed by the address regions they touch (regions.py); a
rule is only compared with rules of its buckets whose cubes overlap it
exactly (interval arithmetic, no solver). Z3 is asked only where rules
overlap, on one incremental solver (push/pop). Every witness is re-evaluated
by the reference semantics before it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import z3

from sealnet.compiler.cubes import cube_intersect, match_intersect, match_subtract
from sealnet.compiler.diagnostics import Note, Severity
from sealnet.compiler.findings import Finding, Proved, findings_to_diagnostics  # noqa: F401  (re-exported for lint)
from sealnet.compiler.ir import Action, AssertKind, Cube, Match, Packet, Policy, Rule
from sealnet.compiler.regions import RuleIndex, a_point
from sealnet.compiler.semantics import decide
from sealnet.compiler.z3_encoding import ACTION_CODES, Chain, PacketVars, action_of, match_pred

# Up to this many rules, witnesses are checked with the plain first-match
# scan of semantics.decide; above it with the region index (same semantics,
# tested equal), so checking stays linear in the number of findings.
PLAIN_CHECK_LIMIT = 256
# Bound on cubes in the interval pre-check before the solver takes over.
CUBE_BUDGET = 512


class WitnessError(AssertionError):
    """A witness that does not show what its finding claims: a verifier bug."""


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    proved: list[Proved] = field(default_factory=list)

    @property
    def has_errors(self) -> bool:
        return any(f.severity is Severity.ERROR for f in self.findings)

    def to_json(self) -> dict:
        return {"findings": [f.to_json() for f in self.findings], "proved": [p.to_json() for p in self.proved]}


def overlaps(a: Match, b: Match) -> bool:
    return any(cube_intersect(x, y) is not None for x in a.cubes for y in b.cubes)


Hull = tuple[int, int, int, int]  # lowest and highest protocol, lowest and highest port


def hull(match: Match) -> Hull:
    """The bounding box of a match's protocols and ports: a quick disjointness test."""
    if not match.cubes:
        return (1, 0, 1, 0)
    return (min(c.proto[0][0] for c in match.cubes), max(c.proto[-1][1] for c in match.cubes),
            min(c.dport[0][0] for c in match.cubes), max(c.dport[-1][1] for c in match.cubes))


def hulls_meet(a: Hull, b: Hull) -> bool:
    return a[0] <= b[1] and b[0] <= a[1] and a[2] <= b[3] and b[2] <= a[3]


class Verifier:
    """Checks over every well-formed packet, or only over `universe` (tests
    restrict it to a space small enough to enumerate; source ports are then 0)."""

    def __init__(self, policy: Policy, universe: Match | None = None):
        self.policy = policy
        self.universe = universe
        self.index = RuleIndex.build(policy)
        self.p = PacketVars.fresh()
        self.solver = z3.Solver()
        self.solver.add(self.p.well_formed())
        if universe is not None:
            self.solver.add(match_pred(self.p, universe), self.p.sport == 0)
        self.report = Report()
        self._by_index = {r.index: r for r in policy.rules}
        self._preds: dict[int, z3.BoolRef] = {}
        self._hulls = {r.index: hull(r.match) for r in policy.rules}

    def pred(self, rule: Rule) -> z3.BoolRef:
        """The rule's match over the packet variables, built once."""
        found = self._preds.get(rule.index)
        if found is None:
            found = self._preds[rule.index] = match_pred(self.p, rule.match)
        return found

    def chain(self, rules: list[Rule]) -> Chain:
        return Chain(self.p, rules, self.policy.default, self.pred)

    # -- solver helpers --------------------------------------------------------
    def _model(self, *constraints: z3.BoolRef) -> z3.ModelRef | None:
        self.solver.push()
        try:
            self.solver.add(*constraints)
            if self.solver.check() == z3.sat:
                return self.solver.model()
            return None
        finally:
            self.solver.pop()

    def _decision(self, packet: Packet, without: Rule | None = None) -> tuple[Action, int | None]:
        """The reference decision (optionally with one rule removed)."""
        if len(self.policy.rules) <= PLAIN_CHECK_LIMIT:
            policy = self.policy
            if without is not None:
                policy = replace(policy, rules=tuple(r for r in policy.rules if r is not without))
            d = decide(policy, packet)
            return d.action, d.rule_index
        i = self.index.decide_index(packet, skip=without.index if without else None)
        return (self.policy.default if i is None else self._by_index[i].action), i

    def _overlapping(self, match: Match, exclude: int | None = None) -> list[Rule]:
        box = hull(match)
        return [self._by_index[i] for i in self.index.candidates(match)
                if i != exclude and hulls_meet(self._hulls[i], box) and overlaps(self._by_index[i].match, match)]

    def _check(self, ok: bool, what: str, packet: Packet) -> None:
        if not ok:
            raise WitnessError(f"witness {packet} does not show {what}")

    def _name(self, i: int | None) -> str:
        return "default" if i is None else self._by_index[i].name

    # -- rules -------------------------------------------------------------------
    def check_rules(self) -> None:
        for rule in self.policy.rules:
            related = self._overlapping(rule.match, exclude=rule.index)
            earlier = [r for r in related if r.index < rule.index]
            later = [r for r in related if r.index > rule.index]
            decided = self._decides(rule, earlier)
            if decided is None:
                continue  # reported as shadowed / redundant / unreachable
            self._redundant_by_later(rule, earlier, later, decided)
            self._pairs(rule, earlier)

    def _decides(self, rule: Rule, earlier: list[Rule]) -> Packet | None:
        """A packet the rule decides, or None after reporting why there is none."""
        if not earlier:
            point = a_point(rule.match if self.universe is None else match_intersect(rule.match, self.universe))
            if point is None:
                model = self._model(match_pred(self.p, rule.match))
                point = self.p.packet(model) if model is not None else None
            if point is not None:
                self._check(self._decision(point)[1] == rule.index, f"`{rule.name}` deciding", point)
                return point
            self._emit("unreachable", Severity.WARNING, (rule.name,),
                       f"rule `{rule.name}` matches no packet at all", rule.span, None)
            return None
        mine = self.pred(rule)
        chain = self.chain(earlier)
        model = self._model(mine, chain.none_match())
        if model is not None:
            point = self.p.packet(model)
            self._check(self._decision(point)[1] == rule.index, f"`{rule.name}` deciding", point)
            return point
        code = ACTION_CODES[rule.action]
        other = self._model(mine, chain.action != code)
        same = self._model(mine, chain.action == code)
        blockers = tuple(r.name for r in earlier)
        notes = tuple(Note(r.span, f"`{r.name}` ({r.action.value}) matches first") for r in earlier[:5])
        if other is not None and same is None:
            w = self.p.packet(other)
            action, by = self._decision(w)
            self._check(action is not rule.action and by is not None and by < rule.index, "shadowing", w)
            self._emit("shadowed", Severity.WARNING, (rule.name, *blockers),
                       f"rule `{rule.name}` ({rule.action.value}) is shadowed: every packet it matches is "
                       f"decided earlier with another action, e.g. by `{self._name(by)}` ({action.value})",
                       rule.span, w, notes)
        elif same is not None and other is None:
            w = self.p.packet(same)
            action, by = self._decision(w)
            self._check(action is rule.action and by is not None and by < rule.index, "redundancy", w)
            self._emit("redundant", Severity.WARNING, (rule.name, *blockers),
                       f"rule `{rule.name}` is redundant: every packet it matches is already decided "
                       f"with the same action ({rule.action.value}), e.g. by `{self._name(by)}`",
                       rule.span, w, notes)
        else:
            w = self.p.packet(other if other is not None else same)  # type: ignore[arg-type]
            _, by = self._decision(w)
            self._check(by is not None and by < rule.index, "blocking", w)
            self._emit("unreachable", Severity.WARNING, (rule.name, *blockers),
                       f"rule `{rule.name}` never decides a packet: it is blocked by "
                       + ", ".join(f"`{b}`" for b in blockers[:5]) + (" ..." if len(blockers) > 5 else ""),
                       rule.span, w, notes)
        return None

    def _redundant_by_later(self, rule: Rule, earlier: list[Rule], later: list[Rule], decided: Packet) -> None:
        """Would the later rules (or the default) decide its packets the same way?"""
        code = ACTION_CODES[rule.action]
        if not later:
            if rule.action is not self.policy.default:
                return
            witness = decided
        else:
            decides = z3.And(self.pred(rule), self.chain(earlier).none_match())
            after = self.chain(later)
            if self._model(decides, after.action != code) is not None:
                return
            model = self._model(decides)
            assert model is not None  # it decides `decided`
            witness = self.p.packet(model)
        self._check(self._decision(witness)[1] == rule.index
                    and self._decision(witness, without=rule)[0] is rule.action, "redundancy", witness)
        self._emit("redundant", Severity.WARNING, (rule.name,),
                   f"rule `{rule.name}` is redundant: without it every packet it decides gets the same "
                   f"action ({rule.action.value}) from the rules after it or the default", rule.span, witness)

    def _pairs(self, rule: Rule, earlier: list[Rule]) -> None:
        for other in earlier:
            if other.action is rule.action:
                continue
            mine, theirs = self.pred(rule), self.pred(other)
            both = self._model(mine, theirs)
            if both is None:
                continue
            theirs_only = self._model(theirs, z3.Not(mine))
            mine_only = self._model(mine, z3.Not(theirs))
            if mine_only is None:
                continue  # rule within other: it decides nothing there (reported above if at all)
            w = self.p.packet(both)
            self._check(other.match.matches(w) and rule.match.matches(w), "an overlap", w)
            note = (Note(other.span, f"`{other.name}` ({other.action.value}) is here"),)
            if theirs_only is None:
                self._emit("generalization", Severity.WARNING, (rule.name, other.name),
                           f"rule `{rule.name}` ({rule.action.value}) generalizes the earlier rule "
                           f"`{other.name}` ({other.action.value})", rule.span, w, note)
            else:
                self._emit("correlated", Severity.WARNING, (rule.name, other.name),
                           f"rule `{rule.name}` ({rule.action.value}) partially overlaps the earlier rule "
                           f"`{other.name}` ({other.action.value})", rule.span, w, note)

    # -- assertions and workflows ----------------------------------------------------
    def _passing(self, match: Match) -> tuple[z3.BoolRef, Chain]:
        chain = self.chain(self._overlapping(match))
        return match_pred(self.p, match), chain

    def check_assertions(self) -> None:
        for a in self.policy.assertions:
            described, chain = self._passing(a.match)
            text = f"assert {a.kind.value} {a.source_text}"
            if a.kind is AssertKind.SEALED:
                bad = self._model(described, chain.action == ACTION_CODES[Action.ALLOW])
                claim, fail_msg = Action.ALLOW, "passes in plaintext"
            elif a.kind is AssertKind.NEVER:
                bad = self._model(described, chain.action != ACTION_CODES[Action.DENY])
                claim, fail_msg = None, "passes"
            else:
                good = self._model(described, chain.action != ACTION_CODES[Action.DENY])
                if good is not None:
                    w = self.p.packet(good)
                    self._check(a.match.matches(w) and self._decision(w)[0].passes, "reachability", w)
                    self.report.proved.append(Proved(f"assert {a.kind.value}", text, a.span))
                    continue
                example = self._model(described)
                w = self.p.packet(example) if example is not None else None
                if w is not None:
                    self._check(not self._decision(w)[0].passes, "a blocked packet", w)
                reason = "every packet it describes is denied" if w else "it describes no packet"
                self._emit("assertion-failed", Severity.ERROR, self._deciders(w),
                           f"`{text}` fails: {reason}", a.span, w)
                continue
            if bad is None:
                self.report.proved.append(Proved(f"assert {a.kind.value}", text, a.span))
                continue
            w = self.p.packet(bad)
            action, _ = self._decision(w)
            self._check(a.match.matches(w) and (action is claim if claim else action.passes), "a violation", w)
            self._emit("assertion-failed", Severity.ERROR, self._deciders(w),
                       f"`{text}` fails: {w} {fail_msg} (decided by `{self._name(self._decision(w)[1])}`)",
                       a.span, w)

    def _deciders(self, w: Packet | None) -> tuple[str, ...]:
        return () if w is None else (self._name(self._decision(w)[1]),)

    def check_workflows(self) -> None:
        for wf in self.policy.workflows:
            stages = {s.name: s for s in wf.stages}
            for flow in wf.flows:
                text = f"{wf.name}: {flow.src} -> {flow.dst}"
                described, chain = self._passing(flow.match)
                good = self._model(described, chain.action != ACTION_CODES[Action.DENY])
                if good is None:
                    example = self._model(described)
                    w = self.p.packet(example) if example is not None else None
                    if w is not None:
                        self._check(not self._decision(w)[0].passes, "a blocked flow", w)
                    self._emit("workflow-blocked", Severity.ERROR, self._deciders(w),
                               f"flow {text} is blocked: the rules pass none of its packets", flow.span, w)
                    continue
                cross = stages[flow.src].domain != stages[flow.dst].domain
                if cross:
                    plain = self._model(described, chain.action == ACTION_CODES[Action.ALLOW])
                    if plain is not None:
                        w = self.p.packet(plain)
                        self._check(self._decision(w)[0] is Action.ALLOW, "plaintext", w)
                        self._emit("workflow-blocked", Severity.ERROR, self._deciders(w),
                                   f"flow {text} crosses domains but {w} passes in plaintext "
                                   f"(decided by `{self._name(self._decision(w)[1])}`)", flow.span, w)
                        continue
                self.report.proved.append(Proved("flow", text + (" (sealed)" if cross else ""), flow.span))

    def check_least_privilege(self) -> None:
        flows_by_key: dict[tuple[int, int], list[Match]] = {}
        for wf in self.policy.workflows:
            for f in wf.flows:
                for key in self.index.keys_of(f.match):
                    flows_by_key.setdefault(key, []).append(f.match)
        for a in self.policy.domains:
            for b in self.policy.domains:
                if a.name == b.name or not a.prefixes or not b.prefixes:
                    continue
                pair = Match((Cube(src=a.addresses, dst=b.addresses),))
                related = self._overlapping(pair)
                candidates = {id(m): m for key in self.index.keys_of(pair) for m in flows_by_key.get(key, ())}
                flows = [m for m in candidates.values() if overlaps(m, pair)]
                if not self._may_pass_unneeded(pair, related, flows):
                    continue  # exact interval arithmetic: nothing to ask the solver
                chain = self.chain(related)
                needed = [match_pred(self.p, m) for m in flows]
                model = self._model(match_pred(self.p, pair), chain.action != ACTION_CODES[Action.DENY],
                                    z3.Not(z3.Or(*needed)) if needed else z3.BoolVal(True))
                if model is None:
                    continue
                w = self.p.packet(model)
                action, by = self._decision(w)
                self._check(action.passes and not any(m.matches(w) for m in flows), "unneeded traffic", w)
                rule = self._by_index[by] if by is not None else None
                span = rule.span if rule else (self.policy.default_span or self.policy.span)
                self._emit("over-permissive", Severity.WARNING, (self._name(by),),
                           f"`{self._name(by)}` passes traffic from `{a.name}` to `{b.name}` that no "
                           f"workflow flow needs ({action.value})", span, w)

    def _may_pass_unneeded(self, region: Match, related: list[Rule], flows: list[Match]) -> bool:
        """False only when no packet of `region` that no flow needs can pass.

        First-match by cube subtraction; exact, and bounded: past
        CUBE_BUDGET cubes it gives up and answers True (the solver decides).
        """
        remaining = region
        for rule in related + [None]:  # type: ignore[list-item]
            action = self.policy.default if rule is None else rule.action
            decided = remaining if rule is None else match_intersect(remaining, rule.match)
            if action.passes and decided.cubes:
                unneeded = decided
                for f in flows:
                    unneeded = match_subtract(unneeded, f)
                    if len(unneeded.cubes) > CUBE_BUDGET:
                        return True
                if any(a_point(Match((c,))) is not None for c in unneeded.cubes):
                    return True
            if rule is not None:
                remaining = match_subtract(remaining, rule.match)
                if len(remaining.cubes) > CUBE_BUDGET:
                    return True
        return False

    def _emit(self, kind: str, severity: Severity, rules: tuple[str, ...], message: str, span,
              witness: Packet | None, notes: tuple[Note, ...] = ()) -> None:
        self.report.findings.append(Finding(kind, severity, rules, message, span, witness, notes))

    def run(self) -> Report:
        self.check_rules()
        self.check_assertions()
        self.check_workflows()
        self.check_least_privilege()
        self.report.findings.sort(key=lambda f: (f.span.line, f.span.column, f.kind))
        return self.report


def verify(policy: Policy, universe: Match | None = None) -> Report:
    return Verifier(policy, universe).run()
