"""A self-made Intel PCS world in Intel's shapes: root CA, PCK Platform CA, PCK certificate with the SGX
extension, TCB signing certificate, CRLs, signed TCB info and QE identity, and TD quotes v4."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from sealnet.runtime.attest import tdx
from sealnet.runtime.attest.evidence import Evidence, LogEntry, replay

NOW = dt.datetime.now(dt.timezone.utc)
FMSPC = bytes.fromhex("00806f050000")
PCEID = bytes.fromhex("0000")
QE_MRSIGNER = bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
SEAM_SIGNER = bytes(48)
SGX_SVNS = [2, 2, 2, 2, 3, 1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]
TEE_TCB = bytes([3, 0, 5] + [0] * 13)


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 128 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big"))


def _seq(*items: bytes) -> bytes:
    return _tlv(0x30, b"".join(items))


def sgx_extension(svns: list[int], pcesvn: int, fmspc: bytes = FMSPC) -> bytes:
    base = tdx.SGX_EXT
    tcb = [_seq(_oid(f"{tdx.SGX_TCB}.{i + 1}"), _int(v)) for i, v in enumerate(svns)]
    tcb.append(_seq(_oid(f"{tdx.SGX_TCB}.17"), _int(pcesvn)))
    tcb.append(_seq(_oid(f"{tdx.SGX_TCB}.18"), _tlv(0x04, bytes(svns))))
    return _seq(_seq(_oid(base + ".1"), _tlv(0x04, os.urandom(16))), _seq(_oid(tdx.SGX_TCB), _seq(*tcb)),
                _seq(_oid(tdx.SGX_PCEID), _tlv(0x04, PCEID)), _seq(_oid(tdx.SGX_FMSPC), _tlv(0x04, fmspc)),
                _seq(_oid(base + ".5"), _tlv(0x0A, b"\x00")))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Intel Corporation")])


def _cert(cn: str, issuer_cn: str, key, signer, *, ca: bool, exts=(), not_after=None, not_before=None):
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(issuer_cn)).public_key(key)
         .serial_number(x509.random_serial_number()).not_valid_before(not_before or NOW - dt.timedelta(days=1))
         .not_valid_after(not_after or NOW + dt.timedelta(days=3650))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    for e in exts:
        b = b.add_extension(e, critical=False)
    return b.sign(signer, hashes.SHA256())


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


def rs(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _p256():
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class IntelWorld:
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)
    ca_key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)
    pck_key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)
    tcb_key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)

    def __post_init__(self) -> None:
        self.root = _cert("Intel SGX Root CA", "Intel SGX Root CA", self.root_key.public_key(), self.root_key, ca=True)
        self.ca = _cert("Intel SGX PCK Platform CA", "Intel SGX Root CA", self.ca_key.public_key(), self.root_key, ca=True)
        self.pck = self.make_pck()
        self.tcb_signer = _cert("Intel SGX TCB Signing", "Intel SGX Root CA", self.tcb_key.public_key(),
                                self.root_key, ca=False)

    def make_pck(self, svns: list[int] = SGX_SVNS, pcesvn: int = 11, **kw) -> x509.Certificate:
        ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(tdx.SGX_EXT), sgx_extension(svns, pcesvn))
        return _cert("Intel SGX PCK Certificate", "Intel SGX PCK Platform CA", self.pck_key.public_key(),
                     self.ca_key, ca=False, exts=[ext], **kw)

    def crl(self, issuer_key, issuer: x509.Certificate, revoked: list[int] = (), next_update=None) -> str:
        b = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject).last_update(NOW - dt.timedelta(days=1))
             .next_update(next_update or NOW + dt.timedelta(days=30)))
        for serial in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(NOW - dt.timedelta(hours=1)).build())
        return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER).hex()

    def tcb_info(self, **over) -> dict:
        level = lambda sgx, pce, tdxc, status: {  # noqa: E731
            "tcb": {"sgxtcbcomponents": [{"svn": v} for v in sgx], "pcesvn": pce,
                    "tdxtcbcomponents": [{"svn": v} for v in tdxc]},
            "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}
        info = {"id": "TDX", "version": 3, "issueDate": (NOW - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "nextUpdate": (NOW + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"), "fmspc": FMSPC.hex(),
                "pceId": PCEID.hex(), "tcbType": 0, "tcbEvaluationDataNumber": 17,
                "tdxModule": {"mrsigner": SEAM_SIGNER.hex(), "attributes": "0000000000000000",
                              "attributesMask": "FFFFFFFFFFFFFFFF"},
                "tcbLevels": [level([v + 1 for v in SGX_SVNS], 13, list(TEE_TCB), "UpToDate"),
                              level(SGX_SVNS, 11, list(TEE_TCB), "SWHardeningNeeded"),
                              level([0] * 16, 0, [0] * 16, "OutOfDate")]}
        info.update(over)
        return info

    def qe_identity(self, **over) -> dict:
        ident = {"id": "TD_QE", "version": 2, "issueDate": (NOW - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "nextUpdate": (NOW + dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "tcbEvaluationDataNumber": 17, "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
                 "attributes": "11000000000000000000000000000000",
                 "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000", "mrsigner": QE_MRSIGNER.hex().upper(),
                 "isvprodid": 2, "tcbLevels": [{"tcb": {"isvsvn": 4}, "tcbDate": "2024-03-13T00:00:00Z",
                                                "tcbStatus": "UpToDate"},
                                               {"tcb": {"isvsvn": 0}, "tcbDate": "2018-01-01T00:00:00Z",
                                                "tcbStatus": "OutOfDate"}]}
        ident.update(over)
        return ident

    def collateral(self, *, tcb_info: dict | None = None, qe_identity: dict | None = None, root_crl=None,
                   pck_crl=None, tcb_sig_key=None) -> dict:
        info_text = json.dumps(tcb_info or self.tcb_info(), separators=(",", ":"))
        ident_text = json.dumps(qe_identity or self.qe_identity(), separators=(",", ":"))
        return {"pck_crl_issuer_chain": _pem(self.ca, self.root),
                "root_ca_crl": root_crl or self.crl(self.root_key, self.root),
                "pck_crl": pck_crl or self.crl(self.ca_key, self.ca),
                "tcb_info_issuer_chain": _pem(self.tcb_signer, self.root), "tcb_info": info_text,
                "tcb_info_signature": rs(tcb_sig_key or self.tcb_key, info_text.encode()).hex(),
                "qe_identity_issuer_chain": _pem(self.tcb_signer, self.root), "qe_identity": ident_text,
                "qe_identity_signature": rs(self.tcb_key, ident_text.encode()).hex()}

    def policy(self, collateral: dict | None = None, **kw) -> tdx.TdxPolicy:
        data = json.dumps(collateral or self.collateral()).encode()
        return tdx.TdxPolicy(tdx.load_collateral(data), root_ca=_pem(self.root).encode(), **kw)


@dataclass
class LabTd:
    """A TD of the lab world: quotes with its MRTD, RTMRs extended by its runtime log."""

    world: IntelWorld
    mrtd: bytes
    att_key: ec.EllipticCurvePrivateKey = field(default_factory=_p256)
    td_attributes: int = 0
    qe_isvsvn: int = 4
    pck: x509.Certificate | None = None
    tee_tcb_svn: bytes = TEE_TCB
    rtmr_override: dict[int, bytes] = field(default_factory=dict)

    def quote(self, report_data: bytes, log: tuple[LogEntry, ...] = ()) -> bytes:
        header = struct.pack("<HHIHH", 4, 2, 0x81, 0, 0) + tdx.INTEL_QE_VENDOR + bytes(20)
        rtmrs = [self.rtmr_override.get(i, replay(log, i)) for i in range(4)]
        body = (self.tee_tcb_svn + os.urandom(48) + SEAM_SIGNER + bytes(8) +
                self.td_attributes.to_bytes(8, "little") + bytes(8) + self.mrtd + bytes(48 * 3) + b"".join(rtmrs)
                + report_data)
        assert len(header) == 48 and len(body) == 584
        att_raw = self.att_key.public_key().public_bytes(serialization.Encoding.X962,
                                                         serialization.PublicFormat.UncompressedPoint)[1:]
        auth = os.urandom(32)
        qe = bytearray(384)
        qe[48:64] = bytes.fromhex("11000000000000000000000000000000")
        qe[128:160] = QE_MRSIGNER
        struct.pack_into("<HH", qe, 256, 2, self.qe_isvsvn)
        qe[320:352] = hashlib.sha256(att_raw + auth).digest()
        chain = _pem(self.pck or self.world.pck, self.world.ca, self.world.root).encode()
        inner = struct.pack("<HI", 5, len(chain)) + chain
        qe_cert = bytes(qe) + rs(self.world.pck_key, bytes(qe)) + struct.pack("<H", len(auth)) + auth + inner
        sig_data = rs(self.att_key, header + body) + att_raw + struct.pack("<HI", 6, len(qe_cert)) + qe_cert
        return header + body + struct.pack("<I", len(sig_data)) + sig_data

    def attest(self, report_data: bytes, log: tuple[LogEntry, ...]) -> Evidence:
        return Evidence("tdx", self.quote(report_data, log), {}, log)
