"""A self-made AMD chain in AMD's real shapes: RSA-4096 ARK and ASK with RSASSA-PSS/SHA-384,
an ECDSA P-384 VCEK carrying AMD's hwID and TCB extensions, reports in the 0x4A0 layout."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from sealnet.runtime.attest import snp
from sealnet.runtime.attest.evidence import Evidence, LogEntry

PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
NOW = dt.datetime.now(dt.timezone.utc)
TCB = {"bootloader": 4, "tee": 0, "snp": 22, "microcode": 213}


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices")])


def _der_int(v: int) -> bytes:
    body = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _cert(subject: str, issuer: str, public, signer, *, ca: bool, serial: int | None = None,
          not_before: dt.datetime | None = None, not_after: dt.datetime | None = None,
          extensions: list[x509.ExtensionType] = (), pss: bool = True) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer)).public_key(public)
         .serial_number(serial or x509.random_serial_number())
         .not_valid_before(not_before or NOW - dt.timedelta(days=1))
         .not_valid_after(not_after or NOW + dt.timedelta(days=3650))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for ext in extensions:
        b = b.add_extension(ext, critical=False)
    if pss:
        return b.sign(signer, hashes.SHA384(), rsa_padding=PSS)
    return b.sign(signer, hashes.SHA384())


@dataclass
class Chain:
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey
    ark: x509.Certificate
    ask: x509.Certificate
    chip_id: bytes = field(default_factory=lambda: os.urandom(64))

    @classmethod
    def make(cls) -> Chain:
        ark_key = rsa.generate_private_key(65537, 4096)
        ask_key = rsa.generate_private_key(65537, 4096)
        ark = _cert("ARK-Milan", "ARK-Milan", ark_key.public_key(), ark_key, ca=True)
        ask = _cert("SEV-Milan", "ARK-Milan", ask_key.public_key(), ark_key, ca=True)
        return cls(ark_key, ask_key, ark, ask)

    def vcek(self, key: ec.EllipticCurvePrivateKey, *, tcb: dict[str, int] = TCB, chip_id: bytes | None = None,
             signer: rsa.RSAPrivateKey | None = None, **kw) -> x509.Certificate:
        exts = [x509.UnrecognizedExtension(x509.ObjectIdentifier(snp.OID_TCB[n]), _der_int(v)) for n, v in tcb.items()]
        hwid = chip_id if chip_id is not None else self.chip_id
        exts.append(x509.UnrecognizedExtension(x509.ObjectIdentifier(snp.OID_HWID), hwid))  # raw, as AMD does
        return _cert("SEV-VCEK", "SEV-Milan", key.public_key(), signer or self.ask_key, ca=False, extensions=exts, **kw)

    def crl(self, revoked: list[int], *, next_update: dt.datetime | None = None) -> bytes:
        b = (x509.CertificateRevocationListBuilder().issuer_name(self.ark.subject)
             .last_update(NOW - dt.timedelta(days=1)).next_update(next_update or NOW + dt.timedelta(days=30)))
        for serial in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(NOW - dt.timedelta(hours=1)).build())
        return b.sign(self.ark_key, hashes.SHA384(), rsa_padding=PSS).public_bytes(serialization.Encoding.DER)

    def policy(self, **kw) -> snp.SnpPolicy:
        return snp.SnpPolicy(pinned_arks={snp.spki_fingerprint(self.ark): "lab"}, **kw)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@dataclass
class LabSnp:
    """A guest of the lab chain: signs reports with its VCEK, hands out the chain as the host would."""

    chain: Chain
    launch: bytes
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP384R1()))
    policy_bits: int = 0x30000
    vcek_cert: x509.Certificate | None = None
    auxblob: bool = True

    def __post_init__(self) -> None:
        if self.vcek_cert is None:
            self.vcek_cert = self.chain.vcek(self.key)

    def report(self, report_data: bytes) -> bytes:
        body = snp.build_body(report_data=report_data, measurement=self.launch, policy=self.policy_bits,
                              reported_tcb=snp.tcb_bytes(TCB), chip_id=self.chain.chip_id)
        return snp.sign_body(body, self.key)

    def attest(self, report_data: bytes, log: tuple[LogEntry, ...]) -> Evidence:
        certs = {"vcek": der(self.vcek_cert), "ask": der(self.chain.ask), "ark": der(self.chain.ark)}
        if self.auxblob:  # as configfs-tsm hands it over: one certificate table
            certs = {"auxblob": snp.build_cert_table(certs)}
        return Evidence("sev-snp", self.report(report_data), certs, log)
