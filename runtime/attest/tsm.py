"""Collecting hardware evidence through the kernel's configfs-tsm report interface.

    /sys/kernel/config/tsm/report/<name>/   (mkdir makes an entry, rmdir removes it)
        inblob      write: the report data, at most 64 bytes
        outblob     read: the SNP report or the TDX quote
        auxblob     read: SNP's certificate table (VCEK, ASK, ARK) when the host provides one
        provider    read: sev_guest or tdx_guest
        generation  read: bumps on every write; a changed value means another writer raced us

Reading generation before and after protects against another process writing
inblob between our write and our read (the report would carry its data, not ours).
"""

from __future__ import annotations

import os
import uuid

from sealnet.runtime.attest.evidence import REPORT_DATA_LEN, Evidence, EvidenceError, LogEntry

TSM_ROOT = "/sys/kernel/config/tsm/report"
PROVIDERS = {"sev_guest": "sev-snp", "tdx_guest": "tdx"}
RTMR_PATH = "/sys/devices/virtual/misc/tdx_guest/measurements/rtmr{}:sha384"


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class TsmAttester:
    """The hardware attester of this guest, whatever its provider."""

    def __init__(self, root: str = TSM_ROOT) -> None:
        if not os.path.isdir(root):
            raise EvidenceError(f"{root}: no configfs-tsm report interface (not a SEV-SNP or TDX guest?)")
        self.root = root

    def attest(self, report_data: bytes, runtime_log: tuple[LogEntry, ...]) -> Evidence:
        if len(report_data) != REPORT_DATA_LEN:
            raise EvidenceError(f"report data must be {REPORT_DATA_LEN} bytes")
        entry = os.path.join(self.root, f"sealnet-{uuid.uuid4().hex[:12]}")
        os.mkdir(entry)
        try:
            provider = _read(os.path.join(entry, "provider")).decode().strip()
            tee = PROVIDERS.get(provider)
            if tee is None:
                raise EvidenceError(f"{entry}/provider: unknown provider {provider!r}")
            with open(os.path.join(entry, "inblob"), "wb") as fh:
                fh.write(report_data)
            before = _read(os.path.join(entry, "generation"))
            report = _read(os.path.join(entry, "outblob"))
            certs = {}
            if tee == "sev-snp" and os.path.exists(os.path.join(entry, "auxblob")):
                aux = _read(os.path.join(entry, "auxblob"))
                if aux:
                    certs["auxblob"] = aux
            if _read(os.path.join(entry, "generation")) != before:
                raise EvidenceError(f"{entry}: another writer changed the request while we read it")
            return Evidence(tee, report, certs, runtime_log)
        finally:
            os.rmdir(entry)


def tdx_rtmr_path() -> str | None:
    """The RTMR files' pattern when this guest is a TDX guest that exposes them, else None."""
    return RTMR_PATH if os.path.isdir(os.path.dirname(RTMR_PATH)) else None


def extend_rtmr(register: int, digest: bytes, path: str = RTMR_PATH) -> None:
    """Extend a TDX RTMR (Linux 6.16+): the kernel computes SHA-384(old || digest)."""
    if len(digest) != 48:
        raise ValueError("an RTMR extension is 48 bytes")
    try:
        with open(path.format(register), "wb") as fh:
            fh.write(digest)
    except OSError as exc:
        raise EvidenceError(f"{path.format(register)}: cannot extend RTMR{register}: {exc.strerror}") from None
