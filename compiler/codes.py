"""Every diagnostic code, in one registry (as Cedar keeps its error codes).

Codes are stable; docs/diagnostics.md documents each one and a test checks
that page against this registry. `E` codes are errors of the front end (the
policy does not compile or cannot be read), `W` warnings of the checker, `V`
findings of the verifier and diff.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    name: str  # the constant's name, for readers of the registry
    summary: str


_ENTRIES = (
    # front end: syntax (parser.py)
    Code("E001", "SYNTAX_ERROR", "syntax error; says what was expected in words"),
    Code("E002", "LEXICAL_ERROR", "unexpected character or unterminated string"),
    Code("E003", "UNREADABLE_INPUT", "a policy file that cannot be read (missing, a directory, not UTF-8, too large)"),
    # front end: semantic checks (checker.py)
    Code("E101", "UNDEFINED_NAME", "undefined (or ambiguous) name in an endpoint"),
    Code("E102", "DUPLICATE_NAME", "a name defined twice"),
    Code("E103", "UNKNOWN_STAGE_DOMAIN", "a stage placed in an unknown domain"),
    Code("E104", "OVERLAPPING_NODES", "node CIDRs of two domains overlap"),
    Code("E105", "INVALID_ADDRESS", "invalid address or CIDR"),
    Code("E106", "PORT_OUT_OF_RANGE", "port out of range"),
    Code("E107", "REVERSED_PORT_RANGE", "reversed port range"),
    Code("E108", "UNKNOWN_TEE", "unknown TEE kind"),
    Code("E109", "MALFORMED_MEASUREMENT", "malformed measurement"),
    Code("E110", "BAD_HEADER", "missing or repeated `policy NAME version N` header"),
    Code("E112", "DUPLICATE_ATTRIBUTE", "a domain attribute given twice"),
    Code("E113", "VERSION_OUT_OF_RANGE", "version out of range"),
    Code("E114", "DUPLICATE_DEFAULT", "a second `default`"),
    Code("E115", "UNKNOWN_FLOW_STAGE", "a flow names a stage its workflow does not have"),
    Code("E116", "PORTS_WITHOUT_PORTED_PROTOCOL", "a port clause on a protocol without ports"),
    Code("E117", "RESERVED_NAME", "a keyword used as a name"),
    Code("E118", "MISSING_TEE", "a domain without `tee`"),
    Code("E119", "UNKNOWN_CIPHER", "an unknown cipher suite"),
    Code("E120", "DUPLICATE_CIPHER", "a second `cipher`"),
    Code("W201", "DUPLICATE_RULE", "a rule repeats an earlier rule"),
    Code("W202", "CROSS_DOMAIN_PLAINTEXT", "`allow` passes plaintext between two domains"),
    Code("W203", "HOST_BITS_SET", "a CIDR with host bits set"),
    Code("W204", "DOMAIN_WITHOUT_NODES", "a domain with no nodes"),
    # verifier and diff (verify.py, diff.py)
    Code("V301", "SHADOWED", "shadowed rule"),
    Code("V302", "REDUNDANT", "redundant rule"),
    Code("V303", "CORRELATED", "correlated rules"),
    Code("V304", "GENERALIZATION", "generalization"),
    Code("V305", "UNREACHABLE", "unreachable rule"),
    Code("V310", "ASSERTION_FAILED", "an `assert` that does not hold"),
    Code("V311", "WORKFLOW_BLOCKED", "a workflow flow that is blocked or passes in plaintext across domains"),
    Code("V312", "OVER_PERMISSIVE", "cross-domain traffic passed that no workflow flow needs"),
    Code("V313", "SEALED_ICMP_DROPPED", "ICMP errors about a sealed flow are dropped (the policy passes the reverse ICMP in clear)"),
    Code("V320", "DECISION_CHANGED", "(diff) a region of packets whose decision changed"),
    Code("V330", "UNDECIDED", "a property the solver could not decide (timeout, resource limit, budget)"),
)

REGISTRY: dict[str, Code] = {c.code: c for c in _ENTRIES}
assert len(REGISTRY) == len(_ENTRIES), "a code is registered twice"
_BY_NAME = {c.name: c.code for c in _ENTRIES}

SYNTAX_ERROR = _BY_NAME["SYNTAX_ERROR"]
LEXICAL_ERROR = _BY_NAME["LEXICAL_ERROR"]
UNREADABLE_INPUT = _BY_NAME["UNREADABLE_INPUT"]
UNDEFINED_NAME = _BY_NAME["UNDEFINED_NAME"]
DUPLICATE_NAME = _BY_NAME["DUPLICATE_NAME"]
UNKNOWN_STAGE_DOMAIN = _BY_NAME["UNKNOWN_STAGE_DOMAIN"]
OVERLAPPING_NODES = _BY_NAME["OVERLAPPING_NODES"]
INVALID_ADDRESS = _BY_NAME["INVALID_ADDRESS"]
PORT_OUT_OF_RANGE = _BY_NAME["PORT_OUT_OF_RANGE"]
REVERSED_PORT_RANGE = _BY_NAME["REVERSED_PORT_RANGE"]
UNKNOWN_TEE = _BY_NAME["UNKNOWN_TEE"]
MALFORMED_MEASUREMENT = _BY_NAME["MALFORMED_MEASUREMENT"]
BAD_HEADER = _BY_NAME["BAD_HEADER"]
DUPLICATE_ATTRIBUTE = _BY_NAME["DUPLICATE_ATTRIBUTE"]
VERSION_OUT_OF_RANGE = _BY_NAME["VERSION_OUT_OF_RANGE"]
DUPLICATE_DEFAULT = _BY_NAME["DUPLICATE_DEFAULT"]
UNKNOWN_FLOW_STAGE = _BY_NAME["UNKNOWN_FLOW_STAGE"]
PORTS_WITHOUT_PORTED_PROTOCOL = _BY_NAME["PORTS_WITHOUT_PORTED_PROTOCOL"]
RESERVED_NAME = _BY_NAME["RESERVED_NAME"]
MISSING_TEE = _BY_NAME["MISSING_TEE"]
UNKNOWN_CIPHER = _BY_NAME["UNKNOWN_CIPHER"]
DUPLICATE_CIPHER = _BY_NAME["DUPLICATE_CIPHER"]
DUPLICATE_RULE = _BY_NAME["DUPLICATE_RULE"]
CROSS_DOMAIN_PLAINTEXT = _BY_NAME["CROSS_DOMAIN_PLAINTEXT"]
HOST_BITS_SET = _BY_NAME["HOST_BITS_SET"]
DOMAIN_WITHOUT_NODES = _BY_NAME["DOMAIN_WITHOUT_NODES"]
DECISION_CHANGED = _BY_NAME["DECISION_CHANGED"]
UNDECIDED = _BY_NAME["UNDECIDED"]

# The verifier's finding kinds and their codes.
FINDING_CODES: dict[str, str] = {
    "shadowed": _BY_NAME["SHADOWED"],
    "redundant": _BY_NAME["REDUNDANT"],
    "correlated": _BY_NAME["CORRELATED"],
    "generalization": _BY_NAME["GENERALIZATION"],
    "unreachable": _BY_NAME["UNREACHABLE"],
    "assertion-failed": _BY_NAME["ASSERTION_FAILED"],
    "workflow-blocked": _BY_NAME["WORKFLOW_BLOCKED"],
    "over-permissive": _BY_NAME["OVER_PERMISSIVE"],
    "sealed-icmp-dropped": _BY_NAME["SEALED_ICMP_DROPPED"],
    "decision-changed": DECISION_CHANGED,
}
