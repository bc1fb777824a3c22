"""Intel TDX evidence: TD quote v4 verified offline from PCS collateral, like Intel's QVL."""

from __future__ import annotations

from dataclasses import dataclass

from sealnet.runtime.attest.evidence import Evidence, EvidenceError, Verified


@dataclass(frozen=True)
class TdxPolicy:
    collateral: dict


def verify(evidence: Evidence, policy: TdxPolicy) -> Verified:
    raise EvidenceError("tdx: verification is not built yet")


def load_collateral(data: bytes, path: str) -> dict:
    raise EvidenceError(f"{path}: tdx collateral is not supported yet")
