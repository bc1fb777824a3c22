"""The language server's one door to the verifier and to `diff`.

Everything the editor shows about verification goes through the plain,
picklable shapes below (they cross from the worker process to the server),
so a change to the verifier's report touches this module only.

The verifier's report is read in either of its shapes: one Outcome per
assertion and flow with a three-way status (proved / refuted / unknown), or
the older list of proved properties beside the findings (then a property
neither proved nor refuted is unknown).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sealnet.compiler.diagnostics import Diagnostic, Note, Severity
from sealnet.compiler.diff import diff
from sealnet.compiler.findings import CODES
from sealnet.compiler.ir import Policy, Span
from sealnet.compiler.verify import verify

PROVED, REFUTED, UNKNOWN = "proved", "refuted", "unknown"
# Related locations listed per finding (a rule blocked by hundreds would flood the editor).
RELATED_LIMIT = 8
# Finding kinds that refute the property at their span.
_REFUTING = ("assertion-failed", "workflow-blocked")


@dataclass(frozen=True)
class FindingView:
    kind: str  # "shadowed", "redundant", ... (findings.CODES)
    code: str
    severity: Severity
    message: str
    span: Span
    rules: tuple[str, ...]  # the rule the finding is about first, then the rules involved
    witness: str | None
    notes: tuple[Note, ...]

    def to_diagnostic(self) -> Diagnostic:
        hint = f"for example {self.witness}" if self.witness else None
        return Diagnostic(self.severity, self.code, self.message, self.span, hint, self.notes)


@dataclass(frozen=True)
class PropertyStatus:
    """An assertion or workflow flow and what the verifier found about it."""

    kind: str  # "assert sealed" ... or "flow"
    text: str
    span: Span
    status: str  # PROVED | REFUTED | UNKNOWN
    witness: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Verdict:
    findings: tuple[FindingView, ...]
    properties: tuple[PropertyStatus, ...]
    undecided: tuple[Diagnostic, ...]  # properties and checks the solver could not decide


def run_verifier(policy: Policy) -> Verdict:
    report = verify(policy)
    findings = tuple(_with_rule_notes(_finding(f), policy) for f in report.findings)
    outcomes = getattr(report, "assertions", None)
    if outcomes is not None:
        properties = tuple(_outcome(o) for o in list(report.assertions) + list(report.flows))
        undecided = tuple(o.to_diagnostic() for o in getattr(report, "unknown", ()))
    else:
        properties = _statuses_from_findings(policy, report, findings)
        undecided = ()
    return Verdict(findings, properties, undecided)


def _finding(f: Any) -> FindingView:
    return FindingView(f.kind, CODES.get(f.kind, f.code), f.severity, f.message, f.span, tuple(f.rules),
                       str(f.witness) if f.witness is not None else None, tuple(f.notes))


def _with_rule_notes(finding: FindingView, policy: Policy) -> FindingView:
    """Every rule a finding involves as a related location (the verifier notes only some)."""
    places = {r.name: (r.span, f"`{r.name}` ({r.action.value})") for r in policy.rules}
    if policy.default_span is not None:
        places["default"] = (policy.default_span, f"the default ({policy.default.value})")
    involved = finding.rules if finding.kind in _REFUTING else finding.rules[1:]
    notes = list(finding.notes)
    noted = {n.span for n in notes}
    for name in involved:
        span, what = places.get(name, (None, ""))
        if span is not None and span not in noted and span != finding.span and len(notes) < RELATED_LIMIT:
            verb = "decides the witness" if finding.kind in _REFUTING else "is involved"
            notes.append(Note(span, f"{what} {verb}"))
            noted.add(span)
    return FindingView(finding.kind, finding.code, finding.severity, finding.message, finding.span,
                       finding.rules, finding.witness, tuple(notes))


def _outcome(o: Any) -> PropertyStatus:
    status = getattr(o.status, "value", o.status)
    return PropertyStatus(o.kind, o.text, o.span, str(status),
                          str(o.witness) if o.witness is not None else None, getattr(o, "reason", None))


def _statuses_from_findings(policy: Policy, report: Any, findings: tuple[FindingView, ...]) -> tuple[PropertyStatus, ...]:
    proved = {p.span: p for p in report.proved}
    refuted = {f.span: f for f in findings if f.kind in _REFUTING}
    out = []
    spans = [(f"assert {a.kind.value}", f"assert {a.kind.value} {a.source_text}", a.span) for a in policy.assertions]
    spans += [("flow", f"{w.name}: {f.src} -> {f.dst}", f.span) for w in policy.workflows for f in w.flows]
    for kind, text, span in spans:
        if span in proved:
            out.append(PropertyStatus(kind, proved[span].text, span, PROVED))
        elif span in refuted:
            out.append(PropertyStatus(kind, text, span, REFUTED, refuted[span].witness, refuted[span].message))
        else:
            out.append(PropertyStatus(kind, text, span, UNKNOWN, reason="not decided"))
    return tuple(out)


# -- fixes, proved by diff ------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    """A decision that a fix changes: packets decided by `old_rule` now decided by `new_rule`."""

    witness: str
    old_rule: str
    old_action: str
    new_rule: str
    new_action: str


@dataclass(frozen=True)
class Comparison:
    decided: bool  # False: the search was bounded or a bucket undecided, so nothing is proved
    changes: tuple[Change, ...]  # one per (old rule, new rule) pair
    packets: int | None = None  # how many packets change, when diff counts them


def compare(old: Policy, new: Policy) -> Comparison:
    """What `policyc diff OLD NEW` says: every class of packets whose decision changes."""
    result = diff(old, new)
    changes = tuple(Change(str(d.witness), d.old_rule, d.old_action.value, d.new_rule, d.new_action.value)
                    for d in result.differences)
    decided = not result.truncated and not getattr(result, "unknown", ())
    regions = getattr(result, "regions", None)
    packets = sum(r.packets for r in regions) if regions is not None else None
    return Comparison(decided, changes, packets)
