"""Simulated evidence: a software platform key stands in for the hardware root.

Same shapes as SEV-SNP (the 0x4A0-byte report, ECDSA P-384 at 0x2A0) so the
same code paths run, but the signing key is an ordinary key file, so the
evidence proves nothing about hardware. A verifier accepts it only when it
is configured with that platform's public key, and every result says
`simulated: true` (the CLI prints "SIMULATED").
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from sealnet.runtime.attest import snp
from sealnet.runtime.attest.evidence import Evidence, EvidenceError, LogEntry, Verified, one_line_errors

PRODUCT = "simulated"


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_fingerprint(key: ec.EllipticCurvePublicKey) -> str:
    return hashlib.sha384(spki_der(key)).hexdigest()


@dataclass
class SimPlatform:
    """A simulated TEE: its platform key and the launch measurement it reports."""

    key: ec.EllipticCurvePrivateKey
    launch_measurement: bytes  # 48 bytes

    def __post_init__(self) -> None:
        self._spki = spki_der(self.key.public_key())

    @classmethod
    def generate(cls, launch_measurement: bytes) -> SimPlatform:
        return cls(ec.generate_private_key(ec.SECP384R1()), launch_measurement)

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)

    def save(self, path: str) -> None:
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)

    def attest(self, report_data: bytes, runtime_log: tuple[LogEntry, ...]) -> Evidence:
        body = snp.build_body(report_data=report_data, measurement=self.launch_measurement)
        return Evidence("sim", snp.sign_body(body, self.key), {"platform": self._spki}, runtime_log)

    def sealing_key(self) -> bytes:
        """A key only this platform derives (stands in for SNP's MSG_KEY_REQ derived key)."""
        raw = self.key.private_numbers().private_value.to_bytes(48, "big")
        return hashlib.sha384(b"sealnet-sim-sealing-key-v1\0" + raw).digest()[:32]


def load_platform(path: str, launch_measurement: bytes) -> SimPlatform:
    with open(path, "rb") as fh:
        key = serialization.load_pem_private_key(fh.read(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP384R1):
        raise EvidenceError(f"{path}: not an ECDSA P-384 private key")
    return SimPlatform(key, launch_measurement)


def load_public(data: bytes, what: str) -> ec.EllipticCurvePublicKey:
    try:
        key = (serialization.load_pem_public_key(data) if b"-----BEGIN" in data
               else serialization.load_der_public_key(data))
    except ValueError:
        raise EvidenceError(f"{what}: not a public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise EvidenceError(f"{what}: not an ECDSA P-384 public key")
    return key


@functools.lru_cache(maxsize=256)
def _platform_key(spki: bytes) -> tuple[ec.EllipticCurvePublicKey, str]:
    key = load_public(spki, "certs.platform")
    return key, public_fingerprint(key)


@one_line_errors
def verify(evidence: Evidence, trusted: set[str]) -> Verified:
    """Accept simulated evidence signed by one of the `trusted` platform keys (SPKI SHA-384)."""
    if not trusted:
        raise EvidenceError("evidence.tee: simulated evidence is not accepted here (no simulated platform is trusted)")
    report = snp.parse_report(evidence.report)
    if "platform" not in evidence.certs:
        raise EvidenceError("certs.platform: the simulated platform key is missing")
    key, fingerprint = _platform_key(evidence.certs["platform"])
    if fingerprint not in trusted:
        raise EvidenceError("certs.platform: not a trusted simulated platform key")
    if not snp.check_report_signature(report, key):
        raise EvidenceError("report.signature: does not verify with the simulated platform key")
    if report.debug:
        raise EvidenceError("report.policy: the guest allows debugging")
    return snp.verified_from(report, evidence, "Simulated", simulated=True, product=PRODUCT)
