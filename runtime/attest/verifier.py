"""One entry point for every backend: evidence in, `Verified` out, or a one-line refusal."""

from __future__ import annotations

from dataclasses import dataclass, field

from sealnet.runtime.attest import sim, snp, tdx
from sealnet.runtime.attest.evidence import Evidence, EvidenceError, Verified


@dataclass(frozen=True)
class VerifierConfig:
    """What this verifier trusts. Simulated platforms only when listed (SPKI SHA-384 fingerprints)."""

    sim_platforms: frozenset[str] = frozenset()
    snp: snp.SnpPolicy = field(default_factory=snp.SnpPolicy)
    tdx: tdx.TdxPolicy | None = None  # collateral and roots

    @property
    def allows_simulation(self) -> bool:
        return bool(self.sim_platforms)


def verify(evidence: Evidence, config: VerifierConfig) -> Verified:
    if evidence.tee == "sim":
        return sim.verify(evidence, set(config.sim_platforms))
    if evidence.tee == "sev-snp":
        return snp.verify(evidence, config.snp)
    if evidence.tee == "tdx":
        if config.tdx is None:
            raise EvidenceError("evidence.tee: no TDX collateral configured, TDX evidence cannot be verified")
        return tdx.verify(evidence, config.tdx)
    raise EvidenceError(f"evidence.tee: {evidence.tee!r} is not a known TEE")
