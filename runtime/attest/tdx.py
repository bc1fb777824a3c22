"""Intel TDX evidence: a TD quote v4 verified offline from PCS collateral, the way Intel's QVL does.

Quote v4 (little-endian integers):

    0     header (48): version u16 = 4, attestation key type u16 = 2 (ECDSA P-256), TEE type u32 = 0x81,
          2 x u16 reserved, QE vendor id [16], user data [20]
    48    TD report body (584): TEE_TCB_SVN [16], MRSEAM [48], MRSIGNERSEAM [48], SEAMATTRIBUTES [8],
          TDATTRIBUTES [8], XFAM [8], MRTD [48], MRCONFIGID [48], MROWNER [48], MROWNERCONFIG [48],
          RTMR0..3 [4 x 48], REPORTDATA [64]
    632   signature data length u32, then: quote signature r||s [64] (big-endian) by the attestation key,
          attestation key x||y [64], certification data: type u16 = 6, size u32, then
          QE report [384] (an SGX report body), QE report signature r||s [64] by the PCK key,
          QE auth data: size u16 and bytes, certification data: type u16 = 5, size u32, PCK chain (PEM)

The order of checks follows the QVL: PCK chain to the pinned Intel SGX Root
CA, CRLs (root CA CRL for the intermediate, PCK CRL for the PCK certificate),
the QE report's signature with the PCK key, the QE report data binding the
attestation key (SHA-256(attestation key || QE auth data)), the quote's
signature with the attestation key, the signed QE identity against the QE
report, the signed TCB info (FMSPC, PCE id, TDX module signer, the first TCB
level the PCK's SGX components, PCE SVN and the quote's TEE_TCB_SVN all
reach), and the resulting TCB status (the worse of the TCB level's and the
QE's). Simplification against the QVL: the TDX module identities of TCB info
v3 (TEE_TCB_SVN[1] > 0) are not evaluated; all 16 TDX components are compared.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from sealnet.runtime.attest import der
from sealnet.runtime.attest.evidence import Evidence, EvidenceError, Verified, one_line_errors, replay
from sealnet.runtime.attest.snp import check_validity, issuer_name, spki_fingerprint

HEADER_LEN, BODY_LEN = 48, 584
SIGNED_LEN = HEADER_LEN + BODY_LEN
QE_REPORT_LEN = 384
QUOTE_VERSION, ATT_KEY_ECDSA_P256, TEE_TDX = 4, 2, 0x81
CERT_QE_REPORT, CERT_PCK_CHAIN = 6, 5
INTEL_QE_VENDOR = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
TD_DEBUG = 1  # TDATTRIBUTES bit 0: the TD is debuggable
BODY = {"tee_tcb_svn": (0, 16), "mrseam": (16, 48), "mrsignerseam": (64, 48), "seam_attributes": (112, 8),
        "td_attributes": (120, 8), "xfam": (128, 8), "mrtd": (136, 48), "mrconfigid": (184, 48),
        "mrowner": (232, 48), "mrownerconfig": (280, 48), "rtmr0": (328, 48), "rtmr1": (376, 48),
        "rtmr2": (424, 48), "rtmr3": (472, 48), "report_data": (520, 64)}
# SHA-384 of the SubjectPublicKeyInfo of Intel's SGX Root CA (both of its certificates share the key).
PINNED_ROOTS = {"3cdf1feb4e5eac629170f17625648da4a16effa22ae2bcca030b4358a8961c1bf26cf54a9598cd6a2d4a9cbb62377d22":
                "Intel SGX Root CA"}
SGX_EXT = "1.2.840.113741.1.13.1"
SGX_TCB, SGX_PCEID, SGX_FMSPC = SGX_EXT + ".2", SGX_EXT + ".3", SGX_EXT + ".4"
COLLATERAL_KEYS = ("pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
                   "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature")
# Worst last: the reported status is the worse of the platform's and the QE's.
STATUS_ORDER = ("UpToDate", "SWHardeningNeeded", "ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded",
                "OutOfDate", "OutOfDateConfigurationNeeded", "Revoked")
ACCEPTED = frozenset(STATUS_ORDER[:4])


@dataclass(frozen=True)
class Collateral:
    pck_crl_issuer_chain: list[x509.Certificate]
    root_ca_crl: x509.CertificateRevocationList
    pck_crl: x509.CertificateRevocationList
    tcb_info_issuer_chain: list[x509.Certificate]
    tcb_info: bytes
    tcb_info_signature: bytes
    qe_identity_issuer_chain: list[x509.Certificate]
    qe_identity: bytes
    qe_identity_signature: bytes


@dataclass(frozen=True)
class TdxPolicy:
    collateral: Collateral
    at: dt.datetime | None = None
    root_ca: bytes | None = None  # PEM of a lab root trusted instead of Intel's
    allow_debug: bool = False
    accepted: frozenset[str] = field(default=ACCEPTED)


def _pem_chain(text: Any, where: str) -> list[x509.Certificate]:
    if not isinstance(text, str) or "-----BEGIN CERTIFICATE-----" not in text:
        raise EvidenceError(f"{where}: expected a PEM certificate chain")
    try:
        certs = x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise EvidenceError(f"{where}: not a PEM certificate chain ({str(exc)[:60]})") from None
    if not 2 <= len(certs) <= 4:
        raise EvidenceError(f"{where}: expected 2 to 4 certificates, found {len(certs)}")
    return certs


def _hex(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise EvidenceError(f"{where}: expected a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise EvidenceError(f"{where}: not hexadecimal") from None


def load_collateral(data: bytes, path: str = "<collateral>") -> Collateral:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvidenceError(f"{path}: not JSON ({str(exc)[:80]})") from None
    if not isinstance(doc, dict):
        raise EvidenceError(f"{path}: expected a JSON object")
    missing = [k for k in COLLATERAL_KEYS if k not in doc]
    if missing:
        raise EvidenceError(f"{path}: missing key {missing[0]!r}")
    crls = {}
    for key in ("root_ca_crl", "pck_crl"):
        raw = _hex(doc[key], f"{path}: {key}")
        try:
            crls[key] = x509.load_der_x509_crl(raw)
        except ValueError:
            raise EvidenceError(f"{path}: {key}: not a DER CRL in hex") from None
    for key in ("tcb_info", "qe_identity"):
        if not isinstance(doc[key], str):
            raise EvidenceError(f"{path}: {key}: expected the signed JSON text")
    sigs = {}
    for key in ("tcb_info_signature", "qe_identity_signature"):
        sigs[key] = _hex(doc[key], f"{path}: {key}")
        if len(sigs[key]) != 64:
            raise EvidenceError(f"{path}: {key}: expected 64 bytes (r||s) in hex")
    return Collateral(
        _pem_chain(doc["pck_crl_issuer_chain"], f"{path}: pck_crl_issuer_chain"), crls["root_ca_crl"],
        crls["pck_crl"], _pem_chain(doc["tcb_info_issuer_chain"], f"{path}: tcb_info_issuer_chain"),
        doc["tcb_info"].encode(), sigs["tcb_info_signature"],
        _pem_chain(doc["qe_identity_issuer_chain"], f"{path}: qe_identity_issuer_chain"),
        doc["qe_identity"].encode(), sigs["qe_identity_signature"])


# ------------------------------------------------------------------ the quote


@dataclass(frozen=True)
class Quote:
    raw: bytes
    header: bytes
    body: dict[str, bytes]
    signature: bytes
    attestation_key: bytes
    qe_report: bytes
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain: list[x509.Certificate]


def _take(data: bytes, off: int, n: int, what: str) -> tuple[bytes, int]:
    if off + n > len(data):
        raise EvidenceError(f"quote: truncated in {what} (needs {off + n} bytes, has {len(data)})")
    return data[off:off + n], off + n


def parse_quote(data: bytes) -> Quote:
    header, off = _take(data, 0, HEADER_LEN, "the header")
    version, key_type, tee_type = struct.unpack_from("<HHI", header)
    if version != QUOTE_VERSION:
        raise EvidenceError(f"quote.version: {version}, only TD quote version 4 is supported")
    if key_type != ATT_KEY_ECDSA_P256:
        raise EvidenceError(f"quote.attestation_key_type: {key_type} is not ECDSA P-256 (2)")
    if tee_type != TEE_TDX:
        raise EvidenceError(f"quote.tee_type: 0x{tee_type:x} is not TDX (0x81)")
    if header[12:28] != INTEL_QE_VENDOR:
        raise EvidenceError("quote.qe_vendor_id: not Intel's quoting enclave")
    body_raw, off = _take(data, off, BODY_LEN, "the TD report")
    body = {name: body_raw[o:o + n] for name, (o, n) in BODY.items()}
    size_raw, off = _take(data, off, 4, "the signature data length")
    (sig_len,) = struct.unpack("<I", size_raw)
    if off + sig_len != len(data):
        raise EvidenceError(f"quote: signature data length {sig_len} does not end the quote ({len(data) - off} bytes)")
    signature, off = _take(data, off, 64, "the quote signature")
    att_key, off = _take(data, off, 64, "the attestation key")
    head, off = _take(data, off, 6, "the certification data header")
    cert_type, cert_size = struct.unpack("<HI", head)
    if cert_type != CERT_QE_REPORT or off + cert_size != len(data):
        raise EvidenceError(f"quote.certification_data: type {cert_type}, expected the QE report (6) to the end")
    qe_report, off = _take(data, off, QE_REPORT_LEN, "the QE report")
    qe_sig, off = _take(data, off, 64, "the QE report signature")
    auth_size_raw, off = _take(data, off, 2, "the QE auth data size")
    qe_auth, off = _take(data, off, struct.unpack("<H", auth_size_raw)[0], "the QE auth data")
    head, off = _take(data, off, 6, "the PCK certification data header")
    inner_type, inner_size = struct.unpack("<HI", head)
    if inner_type != CERT_PCK_CHAIN or off + inner_size != len(data):
        raise EvidenceError(f"quote.qe_certification_data: type {inner_type}, expected the PCK chain (5)")
    chain_text = data[off:].rstrip(b"\0").decode("ascii", errors="replace")
    chain = _pem_chain(chain_text, "quote.pck_chain")
    return Quote(bytes(data), header, body, signature, att_key, qe_report, qe_sig, qe_auth, chain)


# ------------------------------------------------------------------ checks


def _p256(cert: x509.Certificate, what: str) -> ec.EllipticCurvePublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EvidenceError(f"{what}: not an ECDSA P-256 key")
    return key


def _verify_rs(key: ec.EllipticCurvePublicKey, rs: bytes, message: bytes) -> bool:
    sig = encode_dss_signature(int.from_bytes(rs[:32], "big"), int.from_bytes(rs[32:], "big"))
    try:
        key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _chain_to_root(chain: list[x509.Certificate], root_fp: set[str], what: str, at: dt.datetime) -> None:
    """Each certificate issued by the next; the last one a pinned, self-signed root; all valid at `at`."""
    root = chain[-1]
    if spki_fingerprint(root) not in root_fp:
        raise EvidenceError(f"{what}: root {issuer_name(root)!r} is not the pinned Intel SGX Root CA")
    for child, parent in zip(chain, chain[1:] + [root]):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            raise EvidenceError(f"{what}: {issuer_name(child)!r} is not signed by {issuer_name(parent)!r}") from None
    for cert in chain:
        check_validity(cert, f"{what}: {issuer_name(cert)!r}", at)


def _crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, what: str, at: dt.datetime,
         subject: x509.Certificate) -> None:
    if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise EvidenceError(f"{what}: not signed by {issuer_name(issuer)!r}")
    if crl.next_update_utc is not None and at > crl.next_update_utc:
        raise EvidenceError(f"{what}: expired at {crl.next_update_utc.isoformat()}")
    if crl.get_revoked_certificate_by_serial_number(subject.serial_number) is not None:
        raise EvidenceError(f"{issuer_name(subject)!r} is revoked ({what})")


def _signed_json(text: bytes, signature: bytes, chain: list[x509.Certificate], roots: set[str], what: str,
                 at: dt.datetime) -> dict[str, Any]:
    _chain_to_root(chain, roots, f"{what}_issuer_chain", at)
    if not _verify_rs(_p256(chain[0], f"{what} signer"), signature, text):
        raise EvidenceError(f"{what}: signature does not verify with {issuer_name(chain[0])!r}")
    try:
        doc = json.loads(text)
    except ValueError:
        raise EvidenceError(f"{what}: not JSON") from None
    if not isinstance(doc, dict):
        raise EvidenceError(f"{what}: expected a JSON object")
    for key in ("issueDate", "nextUpdate"):
        try:
            when = dt.datetime.fromisoformat(str(doc[key]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise EvidenceError(f"{what}.{key}: missing or not a time") from None
        if key == "issueDate" and when > at:
            raise EvidenceError(f"{what}: issued after {at.isoformat()}")
        if key == "nextUpdate" and when < at:
            raise EvidenceError(f"{what}: expired at {when.isoformat()} (fetch fresh collateral)")
    return doc


def pck_extension(cert: x509.Certificate) -> dict[str, Any]:
    """FMSPC, PCE id, the 16 SGX TCB component SVNs and the PCE SVN from the PCK certificate."""
    for ext in cert.extensions:
        if ext.oid.dotted_string == SGX_EXT and isinstance(ext.value, x509.UnrecognizedExtension):
            fields = der.oid_map(der.parse(ext.value.value))
            break
    else:
        raise EvidenceError("PCK certificate: no SGX extension (1.2.840.113741.1.13.1)")
    try:
        tcb = der.oid_map(fields[SGX_TCB])
        comps = [tcb[f"{SGX_TCB}.{i}"].integer() for i in range(1, 17)]
        return {"fmspc": fields[SGX_FMSPC].value.hex(), "pceid": fields[SGX_PCEID].value.hex(),
                "sgx": comps, "pcesvn": tcb[f"{SGX_TCB}.17"].integer()}
    except KeyError as exc:
        raise EvidenceError(f"PCK certificate: SGX extension lacks {exc.args[0]}") from None


def _svns(level: dict[str, Any], key: str, where: str) -> list[int]:
    comps = level.get("tcb", {}).get(key)
    if not isinstance(comps, list) or len(comps) != 16:
        raise EvidenceError(f"tcb_info.tcbLevels: {where} lacks 16 {key}")
    return [int(c.get("svn", 0)) if isinstance(c, dict) else int(c) for c in comps]


def tcb_status(tcb_info: dict[str, Any], pck: dict[str, Any], tee_tcb_svn: bytes) -> str:
    for i, level in enumerate(tcb_info.get("tcbLevels") or []):
        sgx = _svns(level, "sgxtcbcomponents", f"level {i}")
        tdx = _svns(level, "tdxtcbcomponents", f"level {i}")
        pcesvn = int(level.get("tcb", {}).get("pcesvn", 0))
        if all(a >= b for a, b in zip(pck["sgx"], sgx)) and pck["pcesvn"] >= pcesvn and \
                all(a >= b for a, b in zip(tee_tcb_svn, tdx)):
            return str(level.get("tcbStatus"))
    raise EvidenceError("tcb_info: no TCB level matches this platform (TCB not supported)")


def _masked(value: bytes, expected_hex: Any, mask_hex: Any, what: str) -> None:
    expected, mask = bytes.fromhex(str(expected_hex)), bytes.fromhex(str(mask_hex))
    if len(expected) != len(value) or len(mask) != len(value):
        raise EvidenceError(f"qe_identity.{what}: wrong length")
    if bytes(v & m for v, m in zip(value, mask)) != expected:
        raise EvidenceError(f"QE report: {what} does not match the QE identity")


def qe_identity_status(identity: dict[str, Any], qe_report: bytes) -> str:
    _masked(qe_report[16:20], identity.get("miscselect"), identity.get("miscselectMask"), "miscselect")
    _masked(qe_report[48:64], identity.get("attributes"), identity.get("attributesMask"), "attributes")
    if qe_report[128:160].hex() != str(identity.get("mrsigner", "")).lower():
        raise EvidenceError("QE report: MRSIGNER is not Intel's quoting enclave signer")
    prod_id, isvsvn = struct.unpack_from("<HH", qe_report, 256)
    if prod_id != identity.get("isvprodid"):
        raise EvidenceError(f"QE report: ISVPRODID {prod_id} is not the QE identity's")
    for level in identity.get("tcbLevels") or []:
        if isvsvn >= int(level.get("tcb", {}).get("isvsvn", 1 << 16)):
            return str(level.get("tcbStatus"))
    raise EvidenceError(f"QE report: ISVSVN {isvsvn} matches no QE identity TCB level")


def _worse(a: str, b: str) -> str:
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    return max(a, b, key=lambda s: rank.get(s, len(STATUS_ORDER)))


@one_line_errors
def verify(evidence: Evidence, policy: TdxPolicy) -> Verified:
    at = policy.at or dt.datetime.now(dt.timezone.utc)
    roots = set(PINNED_ROOTS)
    if policy.root_ca is not None:
        roots = {spki_fingerprint(x509.load_pem_x509_certificate(policy.root_ca))}
    c = policy.collateral
    q = parse_quote(evidence.report)
    # 1. The PCK chain and its revocation.
    _chain_to_root(q.pck_chain, roots, "PCK chain", at)
    pck, intermediate, root = q.pck_chain[0], q.pck_chain[1], q.pck_chain[-1]
    _chain_to_root(c.pck_crl_issuer_chain, roots, "pck_crl_issuer_chain", at)
    if c.pck_crl_issuer_chain[0].public_key() != intermediate.public_key():
        raise EvidenceError("pck_crl: issued for another PCK CA than the quote's")
    _crl(c.root_ca_crl, root, "root_ca_crl", at, intermediate)
    _crl(c.pck_crl, intermediate, "pck_crl", at, pck)
    # 2. The QE report: signed by the PCK key, binding the attestation key.
    if not _verify_rs(_p256(pck, "PCK certificate"), q.qe_report_signature, q.qe_report):
        raise EvidenceError("QE report: signature does not verify with the PCK certificate")
    binding = hashlib.sha256(q.attestation_key + q.qe_auth_data).digest()
    if q.qe_report[320:352] != binding or any(q.qe_report[352:384]):
        raise EvidenceError("QE report data: does not bind this quote's attestation key")
    # 3. The quote: signed by the attestation key.
    try:
        att_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + q.attestation_key)
    except ValueError:
        raise EvidenceError("quote.attestation_key: not a P-256 point") from None
    if not _verify_rs(att_key, q.signature, q.raw[:SIGNED_LEN]):
        raise EvidenceError("quote.signature: does not verify with the attestation key")
    # 4. QE identity and TCB info, both signed by Intel's TCB signing key.
    identity = _signed_json(c.qe_identity, c.qe_identity_signature, c.qe_identity_issuer_chain, roots,
                            "qe_identity", at)
    qe_status = qe_identity_status(identity, q.qe_report)
    info = _signed_json(c.tcb_info, c.tcb_info_signature, c.tcb_info_issuer_chain, roots, "tcb_info", at)
    ext = pck_extension(pck)
    if str(info.get("fmspc", "")).lower() != ext["fmspc"]:
        raise EvidenceError(f"tcb_info.fmspc: {info.get('fmspc')} is not the PCK certificate's {ext['fmspc']}")
    if str(info.get("pceId", "")).lower() != ext["pceid"]:
        raise EvidenceError("tcb_info.pceId: not the PCK certificate's")
    module = info.get("tdxModule") or {}
    if module:
        if q.body["mrsignerseam"].hex() != str(module.get("mrsigner", "")).lower():
            raise EvidenceError("quote.mrsignerseam: the TDX module is not signed by the TCB info's signer")
        _masked(q.body["seam_attributes"], module.get("attributes"), module.get("attributesMask"),
                "seam attributes")
    status = _worse(tcb_status(info, ext, q.body["tee_tcb_svn"]), qe_status)
    if status not in policy.accepted:
        raise EvidenceError(f"TCB status {status}: not accepted")
    # 5. The TD itself.
    if int.from_bytes(q.body["td_attributes"], "little") & TD_DEBUG and not policy.allow_debug:
        raise EvidenceError("quote.td_attributes: the TD is debuggable (its memory is readable by the host)")
    for register in sorted({e.register for e in evidence.runtime_log}):
        if replay(evidence.runtime_log, register) != q.body[f"rtmr{register}"]:
            raise EvidenceError(f"runtime_log: replaying it does not give the quote's RTMR{register}")
    return Verified(
        tee="tdx", simulated=False, launch_measurement="sha384:" + q.body["mrtd"].hex(),
        report_data=q.body["report_data"], tcb_status=status, runtime_log=evidence.runtime_log,
        details={**{f"rtmr{i}": q.body[f"rtmr{i}"].hex() for i in range(4)}, "mrtd": q.body["mrtd"].hex(),
                 "mrconfigid": q.body["mrconfigid"].hex(), "mrowner": q.body["mrowner"].hex(),
                 "mrseam": q.body["mrseam"].hex(), "td_attributes": q.body["td_attributes"].hex(),
                 "fmspc": ext["fmspc"], "qe_status": qe_status})
