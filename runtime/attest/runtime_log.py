"""The node's runtime measurement log: every bundle it measured into the TEE since boot, in order.

On TDX each entry is also extended into RTMR3 (BUNDLE_REGISTER), so a verifier
replays the log and compares it with the quote's register; on SEV-SNP and in
simulation the log is bound through the MAKE transcript (docs/make.md). The
log lives in the node's runtime state directory (/run: gone at reboot, like
the registers).

Order: the register is extended first, the log written after. A crash in
between leaves a register holding one more extension than the log says: the
replay then fails and the node gets no keys (fail closed) until it reboots.
The other order could leave a log that claims a bundle the hardware never saw.
"""

from __future__ import annotations

import json
import os

from sealnet.runtime.attest.evidence import BUNDLE_REGISTER, DIGEST_RE, EvidenceError, LogEntry, bundle_measurement
from sealnet.runtime.attest.tsm import extend_rtmr

LOG_NAME = "runtime-log.json"
MAX_ENTRIES = 64


def log_path(state_dir: str) -> str:
    return os.path.join(state_dir, LOG_NAME)


def load(path: str) -> tuple[LogEntry, ...]:
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        return ()
    except (OSError, ValueError) as exc:
        raise EvidenceError(f"{path}: the runtime log cannot be read ({exc}); reboot to start a fresh one") from None
    if not isinstance(doc, list):
        raise EvidenceError(f"{path}: the runtime log is not a list")
    out = []
    for i, e in enumerate(doc):
        if not isinstance(e, dict) or not isinstance(e.get("digest"), str) or not DIGEST_RE.match(e["digest"]) \
                or e.get("register") not in (0, 1, 2, 3) or e.get("kind") not in ("bundle", "agent", "config"):
            raise EvidenceError(f"{path}: entry {i} is not a runtime log entry")
        out.append(LogEntry(int(e["register"]), str(e["kind"]), str(e["digest"])))
    return tuple(out)


def record_bundle(path: str, measurement: str, *, rtmr_path: str | None) -> tuple[LogEntry, ...]:
    """The log after measuring `measurement` (nothing new when it is the bundle measured last)."""
    if not DIGEST_RE.match(measurement):
        raise EvidenceError(f"bundle measurement {measurement[:24]!r} is not sha384:<96 hex digits>")
    entries = load(path)
    if bundle_measurement(entries) == measurement:
        return entries
    if len(entries) >= MAX_ENTRIES:
        raise EvidenceError(f"{path}: {MAX_ENTRIES} bundles measured since boot; reboot to start a fresh log")
    if rtmr_path is not None:
        extend_rtmr(BUNDLE_REGISTER, bytes.fromhex(measurement[7:]), rtmr_path)
    entries += (LogEntry(BUNDLE_REGISTER, "bundle", measurement),)
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump([e.to_json() for e in entries], fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return entries
