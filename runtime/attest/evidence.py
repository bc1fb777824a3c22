"""Evidence and what a verifier concludes from it: one shape for every TEE backend.

Evidence is what an attester hands over: the TEE kind, the hardware's signed
report (SNP attestation report, TDX quote, or the simulated report), the
certificates the platform supplied with it, and the runtime measurement log.
A verifier turns it into `Verified`: the launch measurement, the report data,
the runtime log checked against the hardware (TDX: replayed into RTMRs; SNP
and sim: bound through the report data, see docs/make.md), the TCB status, and
whether the result rests on a simulated root (then it says "simulated"
wherever it is shown).

Everything here is pure data: backends live in `snp`, `tdx` and `sim`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from cryptography.exceptions import UnsupportedAlgorithm

TEES = ("sev-snp", "tdx", "sim")
REPORT_DATA_LEN = 64
MAX_REPORT = 64 * 1024  # a TDX quote with its PCK chain is ~5 KiB; SNP 1184 bytes
MAX_CERT = 16 * 1024
MAX_LOG = 64
LOG_KINDS = ("bundle", "agent", "config")
DIGEST_RE = re.compile(r"^sha384:[0-9a-f]{96}$")
BUNDLE_REGISTER = 3  # TDX RTMR the node agent extends with the bundle measurement (RTMR3: free for the guest)


class EvidenceError(ValueError):
    """Evidence refused; the message is a one-line reason naming the field at fault."""


F = TypeVar("F", bound=Callable[..., Any])


def one_line_errors(fn: F) -> F:
    """Whatever a malformed certificate or key makes a library raise becomes a refusal, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EvidenceError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnsupportedAlgorithm) as exc:
            text = str(exc).splitlines()[0][:120] if str(exc) else ""
            raise EvidenceError(f"evidence: unreadable ({exc.__class__.__name__}: {text})") from None
    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class LogEntry:
    """One runtime measurement: what was measured, into which register, its digest."""

    register: int
    kind: str
    digest: str  # "sha384:<96 hex>"

    def to_json(self) -> dict[str, Any]:
        return {"register": self.register, "kind": self.kind, "digest": self.digest}


def log_digest(log: tuple[LogEntry, ...]) -> bytes:
    """SHA-384 over the log entries in order (what the MAKE transcript carries)."""
    h = hashlib.sha384(b"sealnet-runtime-log-v1\0")
    for e in log:
        h.update(e.register.to_bytes(1, "big") + e.kind.encode() + b"\0" + bytes.fromhex(e.digest[7:]))
    return h.digest()


def replay(log: tuple[LogEntry, ...], register: int) -> bytes:
    """The value a TDX RTMR holds after extending each entry of that register in order."""
    value = bytes(48)
    for e in log:
        if e.register == register:
            value = hashlib.sha384(value + bytes.fromhex(e.digest[7:])).digest()
    return value


def bundle_measurement(log: tuple[LogEntry, ...]) -> str | None:
    """The bundle the node runs: the last bundle entry (a reload appends one)."""
    found = [e.digest for e in log if e.kind == "bundle"]
    return found[-1] if found else None


@dataclass(frozen=True)
class Evidence:
    tee: str
    report: bytes
    certs: dict[str, bytes] = field(default_factory=dict)
    runtime_log: tuple[LogEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"tee": self.tee, "report": base64.b64encode(self.report).decode(),
                "certs": {k: base64.b64encode(v).decode() for k, v in sorted(self.certs.items())},
                "runtime_log": [e.to_json() for e in self.runtime_log]}

    @classmethod
    def from_json(cls, doc: Any, where: str = "evidence") -> Evidence:
        if not isinstance(doc, dict) or set(doc) != {"tee", "report", "certs", "runtime_log"}:
            raise EvidenceError(f"{where}: expected an object with tee, report, certs and runtime_log")
        tee = doc["tee"]
        if tee not in TEES:
            raise EvidenceError(f"{where}.tee: {str(tee)[:20]!r} is not one of {', '.join(TEES)}")
        report = _b64(doc["report"], f"{where}.report", MAX_REPORT)
        certs_doc = doc["certs"]
        if not isinstance(certs_doc, dict) or len(certs_doc) > 8:
            raise EvidenceError(f"{where}.certs: expected an object of at most 8 certificates")
        certs = {str(k): _b64(v, f"{where}.certs.{str(k)[:16]}", MAX_CERT) for k, v in certs_doc.items()}
        log_doc = doc["runtime_log"]
        if not isinstance(log_doc, list) or len(log_doc) > MAX_LOG:
            raise EvidenceError(f"{where}.runtime_log: expected a list of at most {MAX_LOG} entries")
        log = tuple(_entry(e, f"{where}.runtime_log[{i}]") for i, e in enumerate(log_doc))
        return cls(tee, report, certs, log)


def _b64(value: Any, where: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > limit * 4 // 3 + 4:
        raise EvidenceError(f"{where}: expected base64 of at most {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError(f"{where}: not base64") from None


def _entry(doc: Any, where: str) -> LogEntry:
    if not isinstance(doc, dict) or set(doc) != {"register", "kind", "digest"}:
        raise EvidenceError(f"{where}: expected register, kind and digest")
    reg, kind, digest = doc["register"], doc["kind"], doc["digest"]
    if not isinstance(reg, int) or isinstance(reg, bool) or not 0 <= reg <= 3:
        raise EvidenceError(f"{where}.register: must be 0 to 3")
    if kind not in LOG_KINDS:
        raise EvidenceError(f"{where}.kind: must be one of {', '.join(LOG_KINDS)}")
    if not isinstance(digest, str) or not DIGEST_RE.match(digest):
        raise EvidenceError(f"{where}.digest: must be sha384:<96 lowercase hex digits>")
    return LogEntry(reg, kind, digest)


@dataclass(frozen=True)
class Verified:
    """What verified evidence proves. `simulated` results never pass as hardware."""

    tee: str
    simulated: bool
    launch_measurement: str  # "sha384:<hex>" (SNP MEASUREMENT, TDX MRTD, sim)
    report_data: bytes
    tcb_status: str
    runtime_log: tuple[LogEntry, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def bundle_measurement(self) -> str | None:
        return bundle_measurement(self.runtime_log)

    def to_json(self) -> dict[str, Any]:
        return {"tee": self.tee, "simulated": self.simulated, "launch_measurement": self.launch_measurement,
                "report_data": self.report_data.hex(), "tcb_status": self.tcb_status,
                "bundle_measurement": self.bundle_measurement,
                "runtime_log": [e.to_json() for e in self.runtime_log], **self.details}
