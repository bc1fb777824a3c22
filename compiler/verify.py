"""The verifier: anomalies, assertions, workflow checks over the checked IR.

Definitions (a packet is well formed: protocols without ports carry port 0):
- A rule *decides* a packet when it is the first rule that matches it.
- shadowed: the rule decides no packet, and every packet it matches is
  decided by earlier rules with another action (Al-Shaer & Hamed).
- redundant: removing the rule changes no decision: either every packet it
  matches is decided earlier with the same action, or the packets it decides
  would be decided with the same action by the later rules or the default.
- unreachable: the rule decides no packet and the blocking earlier rules
  disagree (some with its action, some not), or it matches no packet at all
  (Batfish's filterLineReachability).
- For shadowed, redundant and unreachable rules the finding names a minimal
  blocking set: earlier rules that together match every packet of the rule,
  each deciding some of them, none of them unnecessary; those with another
  action come first and are flagged.
- correlated: earlier rules with another action overlap it partially (each
  matches a packet the other does not); one finding per rule lists them all.
- generalization: it matches every packet of earlier rules with another
  action, and more; one finding per rule lists them.
- assertion-failed: `sealed` (a described packet passes in plaintext),
  `never` (one passes), `reachable` (none passes).
- workflow-blocked: a flow none of whose packets passes, or a flow across
  domains some of whose packets pass in plaintext.
- over-permissive: for a pair of different domains, a packet from one to the
  other that passes and that no workflow flow describes.

Every property gets one of three answers (solving.Status): proved, refuted
with a witness packet re-checked by the reference semantics, or unknown with
the reason (timeout, resource limit, budget). Unknown is never a pass.

How: rules are filed by the address regions they touch (regions.py) and
carry a bounding box, so a rule is only compared with the few rules of its
buckets whose boxes meet it (numpy over the bucket; a broad rule's box is
tested against every rule's, and many candidates are met exactly by
regions.RuleBoxes). Those comparisons are exact cube arithmetic
(firstmatch.py, which cuts a region only where boxes meet); Z3 is asked only
where the cubes fragment past a budget, on one incremental solver with a
timeout per query and a total budget. A rule none of whose sample packets it
decides is first partitioned by the earlier rules (a bounded number of
pieces): an empty rest proves it decides nothing, and the pieces are those
its blocking set is named from; otherwise the depth-first search decides.
Decisions of witness packets are kept per packet.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
from dataclasses import dataclass, field, replace

import numpy as np
import z3

from sealnet.compiler.cubes import match_intersect, match_size
from sealnet.compiler.diagnostics import Note, Severity
from sealnet.compiler.findings import Finding, Outcome, Proved, findings_to_diagnostics  # noqa: F401  (re-exported for lint)
from sealnet.compiler.firstmatch import (_hull, _near, covers, cube_point, find_decided, holds, is_void, meet, minimal_cover, partition,
                                          point, samples, subtract, uncovered_point)
from sealnet.compiler.ir import Action, AssertKind, Cube, Match, Packet, Policy, Rule, Span
from sealnet.compiler.regions import RegionMap, RuleBoxes, RuleIndex
from sealnet.compiler.semantics import Decision, decide
from sealnet.compiler.solving import Budget, Session, Status, Undecided
from sealnet.compiler.icmp_errors import silenced_seal_rules
from sealnet.compiler.z3_encoding import ACTION_CODES, Chain, PacketVars, match_pred

# Up to this many rules, witnesses are checked with the plain first-match
# scan of semantics.decide; above it with the region index (same semantics,
# tested equal), so checking stays linear in the number of findings.
PLAIN_CHECK_LIMIT = 256
# From this many rules on, the rule checks run in two processes (fork).
PARALLEL_MIN_RULES = 2000
# A rule none of whose sample packets it decides is first cut by the earlier rules, up to
# this many pieces: when nothing is left it decides nothing, and the pieces name its blockers.
PARTITION_FIRST_PIECES = 256
# A match filed in more buckets than this meets candidates by box over all rules.
BROAD_BUCKETS = 16
# From this many candidates on, overlap is tested on all of them at once (numpy) rather than one by one.
OVERLAP_BOXES_MIN = 64
# Rules named in a finding's notes; the finding's `rules` lists them all.
NOTES_SHOWN = 8


class WitnessError(AssertionError):
    """A witness that does not show what its finding claims: a verifier bug."""


@dataclass
class Report:
    """What `verify` answers: the public result the CLI and the language server read.

    findings: anomalies and failures (each a Finding with kind, severity,
      rules, message, span, witness, notes); failed assertions and flows are
      findings too (errors), so `findings_to_diagnostics` shows everything.
    assertions / flows: one Outcome per `assert` and per workflow flow, in
      source order, with status proved / refuted / unknown.
    unknown: every Outcome that could not be decided (assertions, flows, rule
      checks, least-privilege pairs); non-empty means the run proves nothing
      it lists, and the commands exit 3 (unless a definite error exits 1).
    proved: the proved assertions and flows (kept for older readers).
    """

    findings: list[Finding] = field(default_factory=list)
    assertions: list[Outcome] = field(default_factory=list)
    flows: list[Outcome] = field(default_factory=list)
    unknown: list[Outcome] = field(default_factory=list)

    @property
    def proved(self) -> list[Proved]:
        return [Proved(o.kind, o.text, o.span) for o in self.assertions + self.flows if o.status is Status.PROVED]

    @property
    def has_errors(self) -> bool:
        return any(f.severity is Severity.ERROR for f in self.findings)

    @property
    def status(self) -> Status:
        """refuted when anything failed, else unknown when anything is undecided, else proved."""
        if self.has_errors:
            return Status.REFUTED
        return Status.UNKNOWN if self.unknown else Status.PROVED

    def to_json(self) -> dict:
        return {"status": self.status.value,
                "findings": [f.to_json() for f in self.findings],
                "assertions": [o.to_json() for o in self.assertions],
                "flows": [o.to_json() for o in self.flows],
                "unknown": [o.to_json() for o in self.unknown]}


def overlaps(a: Match, b: Match) -> bool:
    return meet(a, b)


Box = tuple[int, int, int, int, int, int, int, int]


def box(match: Match) -> Box:
    """The bounding box of a match: src, dst, protocol and port hulls (empty: an inverted box)."""
    cubes = [c for c in match.cubes if not c.is_empty()]
    if not cubes:
        return (1, 0, 1, 0, 1, 0, 1, 0)
    return (min(c.src[0][0] for c in cubes), max(c.src[-1][1] for c in cubes),
            min(c.dst[0][0] for c in cubes), max(c.dst[-1][1] for c in cubes),
            min(c.proto[0][0] for c in cubes), max(c.proto[-1][1] for c in cubes),
            min(c.dport[0][0] for c in cubes), max(c.dport[-1][1] for c in cubes))


class Verifier:
    """Checks over every well-formed packet, or only over `universe` (tests
    restrict it to a space small enough to enumerate; source ports are then 0)."""

    def __init__(self, policy: Policy, universe: Match | None = None, budget: Budget | None = None):
        self.policy = policy
        self.universe = universe
        self.rules = policy.rules
        self.scoped = [self.scope(r.match) for r in policy.rules]
        regions = RegionMap([policy])
        self.index = RuleIndex(regions, policy.rules)
        self._keys: list[list[tuple[int, int]]] = []
        for rule in policy.rules:
            keys = self.index.keys_of(rule.match)
            self._keys.append(keys)
            for key in keys:
                self.index.buckets.setdefault(key, []).append(rule.index)
        self._bucket_arrays = {k: np.asarray(v, dtype=np.int64) for k, v in self.index.buckets.items()}
        self._boxes = np.asarray([box(m) for m in self.scoped] or np.zeros((0, 8)), dtype=np.int64).reshape(-1, 8)
        self._bucket_boxes: dict[tuple[int, int], np.ndarray] = {}  # the boxes of a bucket's rules, on first need
        self._all_ids = np.arange(len(self.rules), dtype=np.int64)
        self._matches: dict[Packet, list[int]] = {}  # packet -> the first two rules that match it
        self._blocked_pieces: dict[Match, list] = {}  # the match of a rule that decides nothing -> its pieces
        self._covers: dict[tuple[Match, Action], list[Rule]] = {}  # (that match, an action) -> the blocking set
        self._rule_boxes = RuleBoxes(self.scoped)
        self.session = Session(budget)
        self.cubes = self.session.budget.cubes
        self.p = PacketVars.fresh()
        self.session.add(self.p.well_formed())
        if universe is not None:
            self.session.add(match_pred(self.p, universe), self.p.sport == 0)
        self.report = Report()
        self._preds: dict[int, z3.BoolRef] = {}
        self._dead: set[int] = set()  # rules found to decide no packet

    def scope(self, match: Match) -> Match:
        return match if self.universe is None else match_intersect(match, self.universe)

    # -- candidates ----------------------------------------------------------------
    def _related(self, match: Match, keys: list[tuple[int, int]] | None = None) -> np.ndarray:
        """Indices (ascending) of rules whose buckets and bounding boxes meet the match's."""
        keys = self.index.keys_of(match) if keys is None else keys
        arrays = [self._bucket_arrays[k] for k in keys if k in self._bucket_arrays]
        if not arrays:
            return np.zeros(0, dtype=np.int64)
        if len(arrays) > BROAD_BUCKETS:  # a broad match: testing every rule's box is cheaper than merging
            ids, b = self._all_ids, self._boxes
        elif len(keys) == 1:
            ids, b = arrays[0], self._bucket_boxes.get(keys[0])
            if b is None:
                b = self._bucket_boxes[keys[0]] = self._boxes[ids]
        else:
            ids = np.unique(np.concatenate(arrays))
            b = self._boxes[ids]
        q = box(match)
        meet = ((b[:, 0] <= q[1]) & (q[0] <= b[:, 1]) & (b[:, 2] <= q[3]) & (q[2] <= b[:, 3])
                & (b[:, 4] <= q[5]) & (q[4] <= b[:, 5]) & (b[:, 6] <= q[7]) & (q[6] <= b[:, 7]))
        return ids[meet]

    def _overlapping(self, match: Match, ids: np.ndarray) -> list[Rule]:
        """The rules `ids` (ascending) that share a packet with the match, in order."""
        found = None if len(ids) < OVERLAP_BOXES_MIN else self._rule_boxes.meeting(match, ids)
        if found is None:
            return [self.rules[i] for i in ids.tolist() if overlaps(self.scoped[i], match)]
        hit, wide = found
        chosen = hit.tolist()
        if len(wide):
            chosen = sorted(chosen + [i for i in wide.tolist() if overlaps(self.scoped[i], match)])
        return [self.rules[i] for i in chosen]

    # -- Z3 helpers (only where the cubes fragment past their budget) -----------------
    def pred(self, rule: Rule) -> z3.BoolRef:
        """The rule's match over the packet variables, built once."""
        found = self._preds.get(rule.index)
        if found is None:
            found = self._preds[rule.index] = match_pred(self.p, rule.match)
        return found

    def chain(self, rules: list[Rule]) -> Chain:
        return Chain(self.p, rules, self.policy.default, self.pred)

    def _model(self, *constraints: z3.BoolRef) -> Packet | None:
        model = self.session.model(*constraints)
        return None if model is None else self.p.packet(model)

    # -- reference checks ----------------------------------------------------------------
    def _decision(self, packet: Packet, without: Rule | None = None) -> tuple[Action, int | None]:
        """The reference decision (optionally with one rule removed): the first rule that matches.

        Small policies: semantics.decide itself. Large ones: the same scan over
        the rules of the packet's bucket whose boxes hold it (a box holds its
        rule's packets, so no rule that matches is skipped).
        """
        if len(self.rules) <= PLAIN_CHECK_LIMIT:
            policy = self.policy
            if without is not None:
                policy = replace(policy, rules=tuple(r for r in policy.rules if r is not without))
            d = decide(policy, packet)
            return d.action, d.rule_index
        for i in self._matching(packet):
            if without is None or i != without.index:
                return self.rules[i].action, i
        return self.policy.default, None

    def _matching(self, packet: Packet) -> list[int]:
        """The rules that match the packet, in order, up to the second (what a decision
        with or without one rule needs); kept, since a packet is often asked about again."""
        found = self._matches.get(packet)
        if found is not None:
            return found
        found = []
        key = (self.index.regions.region_of(packet.src).id, self.index.regions.region_of(packet.dst).id)
        ids = self._bucket_arrays.get(key)
        if ids is not None:
            b = self._bucket_boxes.get(key)
            if b is None:
                b = self._bucket_boxes[key] = self._boxes[ids]
            ids = ids[(b[:, 0] <= packet.src) & (packet.src <= b[:, 1]) & (b[:, 2] <= packet.dst)
                      & (packet.dst <= b[:, 3]) & (b[:, 4] <= packet.proto) & (packet.proto <= b[:, 5])
                      & (b[:, 6] <= packet.dport) & (packet.dport <= b[:, 7])]
            for i in ids.tolist():
                if self.rules[i].match.matches(packet):
                    found.append(i)
                    if len(found) == 2:
                        break
        self._matches[packet] = found
        return found

    def _check(self, ok: bool, what: str, packet: Packet) -> None:
        if not ok:
            raise WitnessError(f"witness {packet} does not show {what}")

    def _name(self, i: int | None) -> str:
        return "default" if i is None else self.rules[i].name

    def _undecided(self, kind: str, text: str, span: Span, reason: str) -> Outcome:
        outcome = Outcome(kind, text, span, Status.UNKNOWN, reason=reason)
        self.report.unknown.append(outcome)
        return outcome

    # -- rules ---------------------------------------------------------------------------
    def check_rules(self) -> None:
        # A daemonic process (the language server's verification worker) may not
        # have children: it checks in one process.
        may_fork = not multiprocessing.current_process().daemon
        if len(self.rules) >= PARALLEL_MIN_RULES and (os.cpu_count() or 1) > 1 and self.universe is None and may_fork:
            self._check_rules_in_two()
        else:
            self._check_rule_slice(0, 1)

    def _check_rule_slice(self, part: int, parts: int) -> None:
        for rule in self.rules[part::parts]:
            try:
                self._check_rule(rule)
            except Undecided as exc:
                self._undecided("rule", rule.name, rule.span, exc.reason)

    def _check_rules_in_two(self) -> None:
        """Half the rules in a forked child, half here: the checks of different rules are independent."""
        reader, writer = multiprocessing.get_context("fork").Pipe(duplex=False)
        child = multiprocessing.get_context("fork").Process(target=self._child, args=(writer,), daemon=True)
        gc.freeze()  # the child shares the parent's objects without the collector touching (copying) their pages
        try:
            child.start()
        finally:
            gc.unfreeze()
        writer.close()
        try:
            self._check_rule_slice(0, 2)
            findings, unknown = pickle.loads(reader.recv_bytes())
        except EOFError:
            raise RuntimeError("the verifier's worker process died") from None
        finally:
            if child.is_alive():
                child.join(timeout=0.5)
            if child.is_alive():
                child.kill()
                child.join()
            reader.close()
        self.report.findings.extend(findings)
        self.report.unknown.extend(unknown)

    def _child(self, writer) -> None:
        try:
            self.report = Report()
            self._check_rule_slice(1, 2)
            writer.send_bytes(pickle.dumps((self.report.findings, self.report.unknown)))
        except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: the parent reports it
            os._exit(130)
        finally:
            writer.close()

    def _check_rule(self, rule: Rule) -> None:
        mine = self.scoped[rule.index]
        if is_void(mine):
            self._dead.add(rule.index)
            self._emit("unreachable", Severity.WARNING, (rule.name,),
                       f"rule `{rule.name}` matches no packet at all"
                       + ("" if self.universe is None else " (in the universe checked)"), rule.span, None)
            return
        ids = self._related(mine, self._keys[rule.index])
        overlapped = self._overlapping(mine, ids[ids < rule.index])
        # A rule that decides nothing never decides a packet of a later rule, and the union of
        # the earlier rules' matches is the same without it: only the live ones take part.
        earlier = [e for e in overlapped if e.index not in self._dead]
        known = self._blocked_pieces.get(mine)
        if known is not None:  # an earlier rule with this match decides nothing: nor does this one
            self._blocked(rule, mine, earlier, known)
            return
        container = next((e for e in earlier if covers(self.scoped[e.index], mine)), None)
        if container is not None:  # blocked for sure; only the rules up to the first container decide
            self._blocked(rule, mine, [e for e in earlier if e.index <= container.index])
            return
        trial = samples(mine)
        decided = [p for p in trial if self._decision(p)[1] == rule.index]
        if not decided and earlier:
            # No sample is its own: most such rules decide nothing. Cutting it by the earlier
            # rules settles that and is what naming the blocking rules needs anyway.
            # A few pieces at most: a rule that fragments more (broad, often live) goes the depth-first way.
            limit = min(self.cubes, PARTITION_FIRST_PIECES)
            pieces = partition(mine, earlier, limit)
            if pieces is not None and pieces[-1][0] is not None:
                self._blocked(rule, mine, earlier, pieces)  # the same pieces as with the full budget
                return
        if not any(self._decision(p, without=rule)[0] is not rule.action for p in decided):
            # exhaustive: the packets it decides (its cubes less the earlier rules', depth first),
            # and among them one that the later rules or the default decide otherwise
            later_ids = ids[ids > rule.index]
            later_boxes = self._boxes[later_ids]
            first: list[Packet] = []
            over = []

            def other_without(cube: Cube) -> Packet | None:
                p = cube_point(cube)
                if p is None:
                    return None
                first.append(p)
                # only the later rules that can meet this cube take part (find_decided skips the others)
                near = later_ids[_near(later_boxes, _hull(cube))].tolist()
                status, q = find_decided(Match((cube,)), [self.rules[i] for i in near], self.policy.default,
                                         lambda act: act is not rule.action, self.cubes)
                if status == "budget":
                    over.append(cube)
                return q

            status, w = uncovered_point(mine, (self.scoped[r.index] for r in earlier), self.cubes, other_without)
            if status == "found":
                assert w is not None
                self._check(self._decision(w)[1] == rule.index and
                            self._decision(w, without=rule)[0] is not rule.action, f"`{rule.name}` deciding", w)
            elif status == "budget" or over:
                later = self._overlapping(mine, later_ids)
                known = decided + first
                decided_z3 = known[0] if known else self._decides_z3(rule, earlier)
                if decided_z3 is None:
                    return
                self._redundant_by_later(rule, earlier, later, decided_z3, None)
            elif status == "none" and not first:
                self._blocked(rule, mine, earlier)
                return
            elif status == "none":
                w = first[0]
                self._check(self._decision(w)[1] == rule.index, f"`{rule.name}` deciding", w)
                self._redundant_by_later(rule, earlier, [], w, Match(()))
        self._pairs(rule, mine, overlapped)

    def _blocked(self, rule: Rule, mine: Match, earlier: list[Rule], pieces: list | None = None) -> None:
        """The rule decides nothing: classify, and name a minimal blocking set.
        (`pieces`: partition(mine, earlier) when the caller has it.)"""
        self._dead.add(rule.index)
        if pieces is None:
            pieces = partition(mine, earlier, self.cubes)
        if pieces is None:
            self._blocked_z3(rule, earlier)
            return
        # A later rule with this match decides nothing either, and its earlier rules cut it into
        # these same pieces (they are empty before this rule), so it is answered from them.
        self._blocked_pieces[mine] = pieces
        deciders = [r for r, _ in pieces if r is not None]
        actions = {r.action for r in deciders}
        cover = self._covers.get((mine, rule.action))
        if cover is None:
            cover = minimal_cover(mine, deciders, rule.action, self.cubes)
            if cover is None:  # past the budget: the deciders themselves block it
                cover = sorted(deciders, key=lambda r: (r.action is rule.action, r.index))
            self._covers[(mine, rule.action)] = cover
        first = cover[0]
        decided_by = {r.index: m for r, m in pieces if r is not None}
        w = point(decided_by.get(first.index) or match_intersect(mine, self.scoped[first.index]))
        assert w is not None
        action, by = self._decision(w)
        self._check(by is not None and by < rule.index, "blocking", w)
        names = tuple(r.name for r in cover)
        notes = self._blocker_notes(rule, cover)
        listed = ", ".join(f"`{n}`" for n in names[:NOTES_SHOWN]) + (" ..." if len(names) > NOTES_SHOWN else "")
        if actions == {rule.action}:
            self._emit("redundant", Severity.WARNING, (rule.name, *names),
                       f"rule `{rule.name}` is redundant: every packet it matches is already decided "
                       f"with the same action ({rule.action.value}) by {listed}", rule.span, w, notes)
        elif rule.action not in actions:
            self._emit("shadowed", Severity.WARNING, (rule.name, *names),
                       f"rule `{rule.name}` ({rule.action.value}) is shadowed: every packet it matches is "
                       f"decided earlier with another action, by {listed}", rule.span, w, notes)
        else:
            self._emit("unreachable", Severity.WARNING, (rule.name, *names),
                       f"rule `{rule.name}` never decides a packet: it is blocked by {listed}",
                       rule.span, w, notes)

    def _blocker_notes(self, rule: Rule, blockers: list[Rule]) -> tuple[Note, ...]:
        notes = []
        for r in blockers[:NOTES_SHOWN]:
            flag = "with another action" if r.action is not rule.action else "with the same action"
            notes.append(Note(r.span, f"`{r.name}` ({r.action.value}) decides some of its packets first, {flag}"))
        return tuple(notes)

    def _redundant_by_later(self, rule: Rule, earlier: list[Rule], later: list[Rule],
                            decided: Packet, region: Match | None) -> None:
        """Report the rule redundant: the later rules (or the default) decide its packets the same way.

        region None: not yet known, ask Z3; otherwise the caller has proved it exactly.
        """
        witness = decided
        if region is None:
            if later:
                code = ACTION_CODES[rule.action]
                decides = z3.And(self.pred(rule), self.chain(earlier).none_match())
                if self._model(decides, self.chain(later).action != code) is not None:
                    return
            elif rule.action is not self.policy.default:
                return
        self._check(self._decision(witness)[1] == rule.index
                    and self._decision(witness, without=rule)[0] is rule.action, "redundancy", witness)
        self._emit("redundant", Severity.WARNING, (rule.name,),
                   f"rule `{rule.name}` is redundant: without it every packet it decides gets the same "
                   f"action ({rule.action.value}) from the rules after it or the default", rule.span, witness)

    def _pairs(self, rule: Rule, mine: Match, earlier: list[Rule]) -> None:
        correlated: list[Rule] = []
        generalized: list[Rule] = []
        for other in earlier:
            if other.action is rule.action:
                continue
            theirs = self.scoped[other.index]
            within = holds(theirs, mine, self.cubes)
            if within is None:
                within = self._model(self.pred(rule), z3.Not(self.pred(other))) is None
            if within:
                continue  # rule within other: it decides nothing there (reported above if at all)
            contains_it = holds(mine, theirs, self.cubes)
            if contains_it is None:
                contains_it = self._model(self.pred(other), z3.Not(self.pred(rule))) is None
            (generalized if contains_it else correlated).append(other)
        for kind, others, verb in (("generalization", generalized, "generalizes"),
                                   ("correlated", correlated, "partially overlaps")):
            if not others:
                continue
            w = point(match_intersect(mine, self.scoped[others[0].index]))
            assert w is not None
            self._check(others[0].match.matches(w) and rule.match.matches(w), "an overlap", w)
            names = ", ".join(f"`{o.name}` ({o.action.value})" for o in others[:NOTES_SHOWN])
            more = f" and {len(others) - NOTES_SHOWN} more" if len(others) > NOTES_SHOWN else ""
            what = "the earlier rule" if len(others) == 1 else f"{len(others)} earlier rules with another action:"
            notes = tuple(Note(o.span, f"`{o.name}` ({o.action.value}) is here") for o in others[:NOTES_SHOWN])
            self._emit(kind, Severity.WARNING, (rule.name, *(o.name for o in others)),
                       f"rule `{rule.name}` ({rule.action.value}) {verb} {what} {names}{more}",
                       rule.span, w, notes)

    # Z3 fallbacks for the rule checks -----------------------------------------------------
    def _decides_z3(self, rule: Rule, earlier: list[Rule]) -> Packet | None:
        w = self._model(self.pred(rule), self.chain(earlier).none_match())
        if w is not None:
            self._check(self._decision(w)[1] == rule.index, f"`{rule.name}` deciding", w)
            return w
        self._blocked_z3(rule, earlier)
        return None

    def _blocked_z3(self, rule: Rule, earlier: list[Rule]) -> None:
        self._dead.add(rule.index)
        chain, mine, code = self.chain(earlier), self.pred(rule), ACTION_CODES[rule.action]
        other = self._model(mine, chain.action != code)
        same = self._model(mine, chain.action == code)
        w = other if other is not None else same
        assert w is not None
        blockers = sorted(earlier, key=lambda r: (r.action is rule.action, r.index))
        names = tuple(r.name for r in blockers)
        notes = self._blocker_notes(rule, blockers)
        _, by = self._decision(w)
        self._check(by is not None and by < rule.index, "blocking", w)
        kind = "unreachable" if other is not None and same is not None else "shadowed" if other else "redundant"
        self._emit(kind, Severity.WARNING, (rule.name, *names),
                   f"rule `{rule.name}` ({rule.action.value}) decides no packet ({kind}); "
                   f"blocked by the overlapping earlier rules (too fragmented to minimise), "
                   f"e.g. `{self._name(by)}`", rule.span, w, notes)

    # -- assertions and workflows ----------------------------------------------------------
    def _find(self, match: Match, want, minus: list[Match] = ()) -> tuple[Packet | None, bool]:
        """A packet of `match` (outside `minus`) whose decision's action satisfies `want`,
        or None when there is none; and whether the region holds no packet at all."""
        region = self.scope(match)
        if minus:
            region = subtract(region, minus, self.cubes)
            if region is None:
                region = self.scope(match)
                minus_pred = z3.Not(z3.Or(*[match_pred(self.p, m) for m in minus]))
                return self._find_z3(match, want, minus_pred), False
        if is_void(region):
            return None, True
        related = self._overlapping(region, self._related(region))
        status, w = find_decided(region, related, self.policy.default, want, self.cubes)
        if status != "budget":
            return w, False
        return self._find_z3(match, want, z3.BoolVal(True), related), False

    def _find_z3(self, match: Match, want, extra: z3.BoolRef, related: list[Rule] | None = None) -> Packet | None:
        if related is None:
            region = self.scope(match)
            related = self._overlapping(region, self._related(region))
        chain = self.chain(related)
        codes = [ACTION_CODES[a] for a in Action if want(a)]
        cond = z3.Or(*[chain.action == c for c in codes]) if codes else z3.BoolVal(False)
        return self._model(match_pred(self.p, match), cond, extra)

    def check_assertions(self) -> None:
        for a in self.policy.assertions:
            text = f"assert {a.kind.value} {a.source_text}"
            kind = f"assert {a.kind.value}"
            try:
                outcome = self._assertion(a, kind, text)
            except Undecided as exc:
                outcome = self._undecided(kind, text, a.span, exc.reason)
            self.report.assertions.append(outcome)

    def _assertion(self, a, kind: str, text: str) -> Outcome:
        if a.kind is AssertKind.REACHABLE:
            good, void = self._find(a.match, lambda act: act.passes)
            if good is not None:
                self._check(a.match.matches(good) and self._decision(good)[0].passes, "reachability", good)
                return Outcome(kind, text, a.span, Status.PROVED, witness=good)
            w, _ = self._find(a.match, lambda act: True)
            if w is not None:
                self._check(not self._decision(w)[0].passes, "a blocked packet", w)
            reason = "it describes no packet" if void else "every packet it describes is denied"
            self._emit("assertion-failed", Severity.ERROR, self._deciders(w), f"`{text}` fails: {reason}", a.span, w)
            return Outcome(kind, text, a.span, Status.REFUTED, witness=w)
        if a.kind is AssertKind.SEALED:
            bad, _ = self._find(a.match, lambda act: act is Action.ALLOW)
            fail_msg = "passes in plaintext"
        else:
            bad, _ = self._find(a.match, lambda act: act.passes)
            fail_msg = "passes"
        if bad is None:
            return Outcome(kind, text, a.span, Status.PROVED)
        action, by = self._decision(bad)
        claim_ok = action is Action.ALLOW if a.kind is AssertKind.SEALED else action.passes
        self._check(a.match.matches(bad) and claim_ok, "a violation", bad)
        self._emit("assertion-failed", Severity.ERROR, self._deciders(bad),
                   f"`{text}` fails: {bad} {fail_msg} (decided by `{self._name(by)}`)", a.span, bad)
        return Outcome(kind, text, a.span, Status.REFUTED, witness=bad)

    def _deciders(self, w: Packet | None) -> tuple[str, ...]:
        return () if w is None else (self._name(self._decision(w)[1]),)

    def check_workflows(self) -> None:
        for wf in self.policy.workflows:
            stages = {s.name: s for s in wf.stages}
            for flow in wf.flows:
                text = f"{wf.name}: {flow.src} -> {flow.dst}"
                cross = stages[flow.src].domain != stages[flow.dst].domain
                try:
                    outcome = self._flow(flow, text, cross)
                except Undecided as exc:
                    outcome = self._undecided("flow", text, flow.span, exc.reason)
                self.report.flows.append(outcome)

    def _flow(self, flow, text: str, cross: bool) -> Outcome:
        good, _ = self._find(flow.match, lambda act: act.passes)
        if good is None:
            w, _ = self._find(flow.match, lambda act: True)
            if w is not None:
                self._check(not self._decision(w)[0].passes, "a blocked flow", w)
            self._emit("workflow-blocked", Severity.ERROR, self._deciders(w),
                       f"flow {text} is blocked: the rules pass none of its packets", flow.span, w)
            return Outcome("flow", text, flow.span, Status.REFUTED, witness=w)
        if cross:
            plain, _ = self._find(flow.match, lambda act: act is Action.ALLOW)
            if plain is not None:
                self._check(self._decision(plain)[0] is Action.ALLOW, "plaintext", plain)
                self._emit("workflow-blocked", Severity.ERROR, self._deciders(plain),
                           f"flow {text} crosses domains but {plain} passes in plaintext "
                           f"(decided by `{self._name(self._decision(plain)[1])}`)", flow.span, plain)
                return Outcome("flow", text + " (sealed)", flow.span, Status.REFUTED, witness=plain)
        return Outcome("flow", text + (" (sealed)" if cross else ""), flow.span, Status.PROVED)

    def check_least_privilege(self) -> None:
        flows = [f.match for wf in self.policy.workflows for f in wf.flows]
        flow_boxes = np.asarray([box(m) for m in flows] or np.zeros((0, 8)), dtype=np.int64).reshape(-1, 8)
        for a in self.policy.domains:
            for b in self.policy.domains:
                if a.name == b.name or not a.prefixes or not b.prefixes:
                    continue
                pair = Match((Cube(src=a.addresses, dst=b.addresses),))
                try:
                    self._pair(a.name, b.name, pair, flows, flow_boxes)
                except Undecided as exc:
                    span = self.policy.default_span or self.policy.span
                    self._undecided("least-privilege", f"{a.name} -> {b.name}", span, exc.reason)

    def _pair(self, a: str, b: str, pair: Match, flows: list[Match], flow_boxes: np.ndarray) -> None:
        q = box(pair)
        fb = flow_boxes
        near = np.nonzero((fb[:, 0] <= q[1]) & (q[0] <= fb[:, 1]) & (fb[:, 2] <= q[3]) & (q[2] <= fb[:, 3]))[0]
        needed = [flows[i] for i in near.tolist() if overlaps(flows[i], pair)]
        w, _ = self._find(pair, lambda act: act.passes, needed)
        if w is None:
            return
        action, by = self._decision(w)
        self._check(action.passes and not any(m.matches(w) for m in flows), "unneeded traffic", w)
        rule = self.rules[by] if by is not None else None
        span = rule.span if rule else (self.policy.default_span or self.policy.span)
        self._emit("over-permissive", Severity.WARNING, (self._name(by),),
                   f"`{self._name(by)}` passes traffic from `{a}` to `{b}` that no "
                   f"workflow flow needs ({action.value})", span, w)

    def _emit(self, kind: str, severity: Severity, rules: tuple[str, ...], message: str, span,
              witness: Packet | None, notes: tuple[Note, ...] = ()) -> None:
        self.report.findings.append(Finding(kind, severity, rules, message, span, witness, notes))

    def check_icmp_errors(self) -> None:
        """ICMP errors about sealed flows are sealed or dropped (docs/language.md); say
        where they are dropped, since senders then lose port-unreachable and PMTU signals."""
        def decided(packet: Packet) -> Decision:
            action, index = self._decision(packet)
            return Decision(action, None if index is None else self.rules[index])

        def earlier(rule: Rule, region: Match) -> list[Rule]:
            return [r for r in self._overlapping(region, self._related(region)) if r.index < rule.index]

        silenced, undecided = silenced_seal_rules(self.policy, self.session, self.universe,
                                                  decide_fn=decided, earlier_of=earlier)
        for s in silenced:
            by = s.passed_by.rule
            span = by.span if by else (self.policy.default_span or self.policy.span)
            self._emit("sealed-icmp-dropped", Severity.INFO, (s.rule.name, s.passed_by.rule_name),
                       f"ICMP errors about `{s.rule.name}`'s sealed flows are dropped: they would quote the "
                       f"opened packet and go back in clear (`{s.passed_by.rule_name}` passes {s.error}); "
                       f"its senders get no port-unreachable or fragmentation-needed. Seal that ICMP to keep them",
                       s.rule.span, s.quoted, (Note(span, f"`{s.passed_by.rule_name}` decides the reverse ICMP"),))
        for u in undecided:
            self._undecided("rule", f"{u.rule.name}: ICMP errors about its flows", u.rule.span, u.reason)

    def run(self) -> Report:
        # The cube arithmetic makes millions of short-lived tuples and no cycles worth finding:
        # the cyclic collector would rescan the whole policy again and again (a tenth of a large run).
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.check_rules()
            self.check_assertions()
            self.check_workflows()
            self.check_least_privilege()
            self.check_icmp_errors()
        finally:
            if collecting:
                gc.enable()
        self.report.findings.sort(key=lambda f: (f.span.line, f.span.column, f.kind, f.rules))
        self.report.unknown.sort(key=lambda o: (o.span.line, o.span.column, o.kind, o.text))
        return self.report


def verify(policy: Policy, universe: Match | None = None, budget: Budget | None = None) -> Report:
    """Verify a checked policy; `budget` bounds each solver query and the whole run."""
    return Verifier(policy, universe, budget).run()
