"""AMD SEV-SNP evidence: the attestation report in its real layout, its VCEK/VLEK, the ARK/ASK chain.

The report (SEV-SNP ABI specification, ATTESTATION_REPORT, 0x4A0 bytes,
little-endian integers):

    0x000 VERSION u32          0x004 GUEST_SVN u32       0x008 POLICY u64 (bit 19: DEBUG)
    0x010 FAMILY_ID [16]       0x020 IMAGE_ID [16]       0x030 VMPL u32
    0x034 SIGNATURE_ALGO u32 (1: ECDSA P-384 with SHA-384)
    0x038 CURRENT_TCB u64      0x040 PLATFORM_INFO u64
    0x048 flags u32: bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_ID, bits 4:2 SIGNING_KEY (0 VCEK, 1 VLEK)
    0x050 REPORT_DATA [64]     0x090 MEASUREMENT [48]    0x0C0 HOST_DATA [32]
    0x0E0 ID_KEY_DIGEST [48]   0x110 AUTHOR_KEY_DIGEST [48]
    0x140 REPORT_ID [32]       0x160 REPORT_ID_MA [32]   0x180 REPORTED_TCB u64
    0x1A0 CHIP_ID [64]         0x1E0 COMMITTED_TCB u64   0x1F8 LAUNCH_TCB u64
    0x2A0 SIGNATURE: R [72] and S [72], little-endian, zero-extended; over bytes 0x000-0x29F

A TCB value is 8 bytes: BOOT_LOADER, TEE, 4 reserved, SNP, MICROCODE (Milan
and Genoa). The VCEK is an ECDSA P-384 key certified by the ASK, the ASK by
the ARK (both RSA-4096 with RSASSA-PSS, SHA-384, 48-byte salt); the ARK is
self-signed and must be one this verifier pins (by its public key, never by
its name: anyone can call a certificate "ARK-Milan").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Callable, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from sealnet.runtime.attest.evidence import Evidence, EvidenceError, Verified, one_line_errors

REPORT_LEN = 0x4A0
SIGNED_LEN = 0x2A0
SIG_COMPONENT = 72
P384_LEN = 48
SIG_ALGO_ECDSA_P384_SHA384 = 1
POLICY_DEBUG = 1 << 19
SIGNING_KEY_VCEK, SIGNING_KEY_VLEK = 0, 1
SUPPORTED_VERSIONS = range(2, 6)
OFF = {"version": 0x00, "guest_svn": 0x04, "policy": 0x08, "vmpl": 0x30, "sig_algo": 0x34,
       "current_tcb": 0x38, "flags": 0x48, "report_data": 0x50, "measurement": 0x90, "host_data": 0xC0,
       "reported_tcb": 0x180, "chip_id": 0x1A0, "committed_tcb": 0x1E0, "launch_tcb": 0x1F8,
       "signature": 0x2A0}
TCB_FIELDS = {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7}
# GUIDs of the certificate table the host supplies with an extended report (GHCB spec, table 8).
CERT_GUIDS = {uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd"): "vcek",
              uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1"): "vlek",
              uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782"): "ask",
              uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae"): "ark"}
# AMD's VCEK extensions (AMD "VCEK certificate and KDS interface specification").
OID_TCB = {"bootloader": "1.3.6.1.4.1.3704.1.3.1", "tee": "1.3.6.1.4.1.3704.1.3.2",
           "snp": "1.3.6.1.4.1.3704.1.3.3", "microcode": "1.3.6.1.4.1.3704.1.3.8"}
OID_HWID = "1.3.6.1.4.1.3704.1.4"
# SHA-384 of the SubjectPublicKeyInfo of AMD's production ARKs.
PINNED_ARKS = {
    "1249f67f15cf229a4069195e1a9ce537d1765ef706a1f4a123c36be9518786515d25ecc007f366b564d2b3f31c48082e": "Milan",
    "32ab53a6ce5ec14926207396e5c475ae768a6a9831b7e860b5acf2e1c1dff222bc5a8bfc43eb5e06393189c1f246d880": "Genoa",
    "3475f08a9727f8ac9a1deaea5f2a2097aa59d64d05c2a678c229c873e6359d3a6926287a2a22cd5f88a385e333a2fcc5": "Turin",
}
PSS_SHA384 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
# AMD's KDS issues VCEKs with serial number 0, which RFC 5280 disallows and `cryptography` parses with
# a deprecation warning (read lazily, whenever the serial is looked at). The chain's signatures, not
# the serial, make a VCEK genuine, so that one warning is silenced, and only it.
warnings.filterwarnings("ignore", message="Parsed a serial number which wasn't positive",
                        category=CryptographyDeprecationWarning)


@dataclass(frozen=True)
class Report:
    raw: bytes
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    sig_algo: int
    flags: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    reported_tcb: bytes
    chip_id: bytes
    signature_r: int
    signature_s: int

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def signing_key(self) -> int:
        return (self.flags >> 2) & 0x7

    @property
    def mask_chip_id(self) -> bool:
        return bool(self.flags & 0x2)


def _u32(data: bytes, off: int) -> int:
    return int(struct.unpack_from("<I", data, off)[0])


def parse_report(data: bytes) -> Report:
    if len(data) != REPORT_LEN:
        raise EvidenceError(f"report: {len(data)} bytes, an SNP attestation report is {REPORT_LEN} (0x4A0)")
    sig = data[OFF["signature"]:OFF["signature"] + 2 * SIG_COMPONENT]
    r_bytes, s_bytes = sig[:SIG_COMPONENT], sig[SIG_COMPONENT:]
    if any(r_bytes[P384_LEN:]) or any(s_bytes[P384_LEN:]):
        raise EvidenceError("report.signature: R or S has bits above 384")
    return Report(
        raw=bytes(data), version=_u32(data, 0x00), guest_svn=_u32(data, 0x04),
        policy=int(struct.unpack_from("<Q", data, 0x08)[0]), vmpl=_u32(data, 0x30), sig_algo=_u32(data, 0x34),
        flags=_u32(data, 0x48), report_data=bytes(data[0x50:0x90]), measurement=bytes(data[0x90:0xC0]),
        host_data=bytes(data[0xC0:0xE0]), reported_tcb=bytes(data[0x180:0x188]),
        chip_id=bytes(data[0x1A0:0x1E0]),
        signature_r=int.from_bytes(r_bytes, "little"), signature_s=int.from_bytes(s_bytes, "little"))


def tcb_dict(tcb: bytes) -> dict[str, int]:
    return {name: tcb[i] for name, i in TCB_FIELDS.items()}


def tcb_bytes(values: dict[str, int]) -> bytes:
    out = bytearray(8)
    for name, i in TCB_FIELDS.items():
        out[i] = values.get(name, 0)
    return bytes(out)


# ------------------------------------------------------------------ producing reports (sim, tests)


def build_body(*, report_data: bytes, measurement: bytes, policy: int = 0x30000, version: int = 3,
               host_data: bytes = bytes(32), reported_tcb: bytes = bytes(8), chip_id: bytes = bytes(64),
               vmpl: int = 0, signing_key: int = SIGNING_KEY_VCEK) -> bytearray:
    """The signed part of a report (bytes 0x000-0x29F) in the real layout."""
    if len(report_data) != 64 or len(measurement) != 48 or len(host_data) != 32 or len(chip_id) != 64:
        raise ValueError("report_data 64, measurement 48, host_data 32 and chip_id 64 bytes")
    body = bytearray(SIGNED_LEN)
    struct.pack_into("<IIQ", body, 0, version, 0, policy)
    struct.pack_into("<II", body, 0x30, vmpl, SIG_ALGO_ECDSA_P384_SHA384)
    struct.pack_into("<8s", body, 0x38, reported_tcb)
    struct.pack_into("<I", body, 0x48, signing_key << 2)
    body[0x50:0x90] = report_data
    body[0x90:0xC0] = measurement
    body[0xC0:0xE0] = host_data
    body[0x180:0x188] = reported_tcb
    body[0x1A0:0x1E0] = chip_id
    body[0x1E0:0x1E8] = reported_tcb
    body[0x1F8:0x200] = reported_tcb
    return body


def sign_body(body: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """A full 0x4A0-byte report: `body` followed by the AMD-format ECDSA P-384 signature."""
    r, s = decode_dss_signature(key.sign(bytes(body), ec.ECDSA(hashes.SHA384())))
    sig = r.to_bytes(SIG_COMPONENT, "little") + s.to_bytes(SIG_COMPONENT, "little")
    return bytes(body) + sig + bytes(REPORT_LEN - SIGNED_LEN - len(sig))


def check_report_signature(report: Report, key: ec.EllipticCurvePublicKey) -> bool:
    if report.sig_algo != SIG_ALGO_ECDSA_P384_SHA384:
        return False
    if not isinstance(key.curve, ec.SECP384R1):
        return False
    try:
        key.verify(encode_dss_signature(report.signature_r, report.signature_s), report.raw[:SIGNED_LEN],
                   ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------------ certificates


def parse_cert_table(table: bytes) -> dict[str, bytes]:
    """The certificate table of an extended report (configfs-tsm auxblob): GUID, offset, length entries."""
    out: dict[str, bytes] = {}
    for i in range(0, min(len(table), 24 * 64), 24):
        entry = table[i:i + 24]
        if len(entry) < 24:
            raise EvidenceError("certificate table: truncated entry")
        raw_guid, off, length = entry[:16], *struct.unpack("<II", entry[16:])
        if not any(entry):
            return out
        if off + length > len(table):
            raise EvidenceError(f"certificate table: entry {i // 24} points outside the table")
        for guid in (uuid.UUID(bytes=raw_guid), uuid.UUID(bytes_le=raw_guid)):
            if guid in CERT_GUIDS:
                out[CERT_GUIDS[guid]] = bytes(table[off:off + length])
    raise EvidenceError("certificate table: no terminating entry")


def build_cert_table(certs: dict[str, bytes]) -> bytes:
    names = {v: k for k, v in CERT_GUIDS.items()}
    header = bytearray()
    blobs = bytearray()
    start = 24 * (len(certs) + 1)
    for name, der in certs.items():
        header += names[name].bytes + struct.pack("<II", start + len(blobs), len(der))
        blobs += der
    return bytes(header + bytes(24) + blobs)


T = TypeVar("T")


def _load_pem_or_der(data: bytes, what: str, kind: str, pem: Callable[[bytes], T], der: Callable[[bytes], T]) -> T:
    try:
        return pem(data) if b"-----BEGIN" in data else der(data)
    except ValueError as exc:
        raise EvidenceError(f"{what}: not an X.509 {kind} ({str(exc).splitlines()[0][:80]})") from None


def load_cert(data: bytes, what: str) -> x509.Certificate:
    return _load_pem_or_der(data, what, "certificate", x509.load_pem_x509_certificate, x509.load_der_x509_certificate)


def spki_fingerprint(cert: x509.Certificate) -> str:
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha384(spki).hexdigest()


def _check_pss(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """RSASSA-PSS with SHA-384 (AMD's only certificate signature), by the issuer's key."""
    key = issuer.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise EvidenceError(f"{what}: its issuer's key is not RSA")
    if child.signature_algorithm_oid != x509.SignatureAlgorithmOID.RSASSA_PSS or \
            not isinstance(child.signature_hash_algorithm, hashes.SHA384):
        raise EvidenceError(f"{what}: not signed with RSASSA-PSS/SHA-384")
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, PSS_SHA384, hashes.SHA384())
    except InvalidSignature:
        raise EvidenceError(f"{what}: signature does not verify with {issuer_name(issuer)}") from None


def issuer_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def check_validity(cert: x509.Certificate, what: str, at: dt.datetime) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise EvidenceError(f"{what}: not valid at {at.isoformat()} (valid {cert.not_valid_before_utc.date()} "
                            f"to {cert.not_valid_after_utc.date()})")


def _der_value(raw: bytes, tag: int) -> bytes:
    if len(raw) < 2 or raw[0] != tag:
        raise EvidenceError(f"VCEK extension: expected DER tag 0x{tag:02x}")
    length, off = raw[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, off = int.from_bytes(raw[2:2 + n], "big"), 2 + n
    return raw[off:off + length]


def _extension(cert: x509.Certificate, oid: str) -> bytes | None:
    for ext in cert.extensions:
        if ext.oid.dotted_string == oid and isinstance(ext.value, x509.UnrecognizedExtension):
            return ext.value.value
    return None


@dataclass(frozen=True)
class SnpPolicy:
    pinned_arks: dict[str, str] = field(default_factory=lambda: dict(PINNED_ARKS))
    allow_debug: bool = False
    min_tcb: dict[str, int] = field(default_factory=dict)
    at: dt.datetime | None = None
    crls: tuple[bytes, ...] = ()  # AMD's CRLs (KDS .../crl), signed by the ARK: revoked ASKs and VCEKs


def load_crl(data: bytes, what: str) -> x509.CertificateRevocationList:
    return _load_pem_or_der(data, what, "CRL", x509.load_pem_x509_crl, x509.load_der_x509_crl)


def check_revocation(crl_data: bytes, ark: x509.Certificate, certs: list[tuple[x509.Certificate, str]],
                     at: dt.datetime) -> None:
    """The CRL is the ARK's (RSASSA-PSS/SHA-384), current at `at`, and lists none of `certs`."""
    crl = load_crl(crl_data, "CRL")
    key = ark.public_key()
    if crl.issuer != ark.subject or not isinstance(key, rsa.RSAPublicKey):
        raise EvidenceError("CRL: not issued by the ARK")
    try:
        key.verify(crl.signature, crl.tbs_certlist_bytes, PSS_SHA384, hashes.SHA384())
    except InvalidSignature:
        raise EvidenceError("CRL: signature does not verify with the ARK") from None
    if crl.next_update_utc is not None and at > crl.next_update_utc:
        raise EvidenceError(f"CRL: expired at {crl.next_update_utc.isoformat()}")
    for cert, what in certs:
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise EvidenceError(f"{what}: revoked (serial {cert.serial_number:x} is on AMD's CRL)")


def verify_chain(leaf: x509.Certificate, ask: x509.Certificate, ark: x509.Certificate,
                 policy: SnpPolicy) -> str:
    """ARK pinned and self-signed, ASK by ARK, VCEK/VLEK by ASK, all valid now; returns the product."""
    at = policy.at or dt.datetime.now(dt.timezone.utc)
    product = policy.pinned_arks.get(spki_fingerprint(ark))
    if product is None:
        raise EvidenceError(f"ARK: {issuer_name(ark)!r} is not a pinned AMD root key "
                            f"(SPKI sha384 {spki_fingerprint(ark)[:16]}...)")
    _check_pss(ark, ark, "ARK")
    _check_pss(ask, ark, "ASK")
    _check_pss(leaf, ask, "VCEK")
    for cert, what in ((ark, "ARK"), (ask, "ASK"), (leaf, "VCEK")):
        check_validity(cert, what, at)
    for crl in policy.crls:
        check_revocation(crl, ark, [(ask, "ASK"), (leaf, "VCEK")], at)
    return product


def verify_report(report: Report, leaf: x509.Certificate, policy: SnpPolicy) -> str:
    """The report's own checks once its signing key is trusted; returns the TCB status."""
    if report.version not in SUPPORTED_VERSIONS:
        raise EvidenceError(f"report.version: {report.version} is not a supported SNP report version")
    if report.signing_key not in (SIGNING_KEY_VCEK, SIGNING_KEY_VLEK):
        raise EvidenceError(f"report.signing_key: {report.signing_key} is neither VCEK nor VLEK")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not check_report_signature(report, key):
        raise EvidenceError("report.signature: does not verify with the VCEK (ECDSA P-384/SHA-384)")
    if report.signing_key == SIGNING_KEY_VCEK:
        hwid = _extension(leaf, OID_HWID)
        if hwid is not None and len(hwid) == 66 and hwid[:2] == b"\x04\x40":
            hwid = hwid[2:]  # tolerate a DER-wrapped hwID; AMD's KDS puts the 64 raw bytes in the extension
        if hwid is not None and not report.mask_chip_id and hwid != report.chip_id:
            raise EvidenceError("report.chip_id: the VCEK was issued for another chip")
        reported = tcb_dict(report.reported_tcb)
        for name, oid in OID_TCB.items():
            raw = _extension(leaf, oid)
            if raw is not None and int.from_bytes(_der_value(raw, 0x02), "big") != reported[name]:
                raise EvidenceError(f"report.reported_tcb: {name} {reported[name]} is not the VCEK's TCB")
    if report.debug and not policy.allow_debug:
        raise EvidenceError("report.policy: the guest allows debugging (its memory is readable by the host)")
    reported = tcb_dict(report.reported_tcb)
    for name, minimum in policy.min_tcb.items():
        if reported[name] < minimum:
            raise EvidenceError(f"report.reported_tcb: {name} {reported[name]} is below the minimum {minimum}")
    return "UpToDate" if policy.min_tcb else "NotChecked"


@one_line_errors
def verify(evidence: Evidence, policy: SnpPolicy) -> Verified:
    report = parse_report(evidence.report)
    certs = dict(evidence.certs)
    if "auxblob" in certs:
        certs = {**parse_cert_table(certs.pop("auxblob")), **certs}
    leaf_der = certs.get("vlek") if report.signing_key == SIGNING_KEY_VLEK else certs.get("vcek")
    if leaf_der is None or "ask" not in certs or "ark" not in certs:
        raise EvidenceError("certs: the VCEK (or VLEK), ASK and ARK are all needed")
    leaf = load_cert(leaf_der, "VCEK")
    product = verify_chain(leaf, load_cert(certs["ask"], "ASK"), load_cert(certs["ark"], "ARK"), policy)
    status = verify_report(report, leaf, policy)
    return verified_from(report, evidence, status, simulated=False, product=product)


def verified_from(report: Report, evidence: Evidence, status: str, *, simulated: bool, product: str) -> Verified:
    return Verified(
        tee=evidence.tee, simulated=simulated, launch_measurement="sha384:" + report.measurement.hex(),
        report_data=report.report_data, tcb_status=status, runtime_log=evidence.runtime_log,
        details={"product": product, "host_data": report.host_data.hex(), "chip_id": report.chip_id.hex(),
                 "reported_tcb": tcb_dict(report.reported_tcb), "guest_svn": report.guest_svn,
                 "vmpl": report.vmpl, "debug": report.debug, "report_version": report.version})
