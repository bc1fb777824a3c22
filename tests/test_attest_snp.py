"""SEV-SNP: the report layout, the AMD chain, `sealnet attest verify --tee sev-snp`, and SNP evidence
through the key broker. Chains are made here in AMD's shapes; the real Milan ARK checks the pin."""

from __future__ import annotations

import datetime as dt
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cp_lab import BUNDLE, LAUNCH, LAUNCH_TEXT, Platforms, live, make_broker, manifest, run
from snp_lab import NOW, TCB, Chain, LabSnp, der, pem
from sealnet.runtime import control_client
from sealnet.runtime.attest import snp
from sealnet.runtime.attest.evidence import Evidence, EvidenceError
from sealnet.runtime.attest.verifier import VerifierConfig
from sealnet.runtime.control_client import ControlError

SEALNET = str(Path(sys.executable).with_name("sealnet"))
DATA = Path(__file__).parent / "data"
CHAIN = Chain.make()
RD = bytes(range(64))


def _verify(guest: LabSnp, **kw) -> object:
    return snp.verify(guest.attest(RD, ()), CHAIN.policy(**kw))


def test_report_layout_offsets_are_the_abi_specification() -> None:
    guest = LabSnp(CHAIN, LAUNCH)
    raw = guest.report(RD)
    assert len(raw) == 0x4A0
    # Read the fields back with plain struct at the ABI's offsets, not through the parser.
    assert raw[0x50:0x90] == RD and raw[0x90:0xC0] == LAUNCH and raw[0x1A0:0x1E0] == CHAIN.chip_id
    assert struct.unpack_from("<I", raw, 0x34)[0] == 1  # ECDSA P-384 with SHA-384
    assert raw[0x180:0x188] == bytes([4, 0, 0, 0, 0, 0, 22, 213])
    r = int.from_bytes(raw[0x2A0:0x2A0 + 72], "little")
    s = int.from_bytes(raw[0x2A0 + 72:0x2A0 + 144], "little")
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    guest.key.public_key().verify(encode_dss_signature(r, s), raw[:0x2A0], ec.ECDSA(hashes.SHA384()))
    parsed = snp.parse_report(raw)
    assert (parsed.report_data, parsed.measurement, parsed.chip_id) == (RD, LAUNCH, CHAIN.chip_id)


def test_good_evidence_verifies_from_the_certificate_table() -> None:
    v = _verify(LabSnp(CHAIN, LAUNCH))
    assert v.tee == "sev-snp" and not v.simulated
    assert v.launch_measurement == LAUNCH_TEXT and v.report_data == RD
    assert v.details["reported_tcb"] == TCB


@pytest.mark.parametrize("product", ["Milan", "Genoa", "Turin"])
def test_the_real_amd_arks_are_pinned_and_self_signed_with_pss(product: str) -> None:
    ark = x509.load_pem_x509_certificate((DATA / f"amd_ark_{product.lower()}.pem").read_bytes())
    assert snp.PINNED_ARKS[snp.spki_fingerprint(ark)] == product
    snp._check_pss(ark, ark, "ARK")  # AMD's own RSASSA-PSS/SHA-384 self-signature verifies
    # a lab chain whose root merely calls itself ARK-Milan is not pinned
    with pytest.raises(EvidenceError, match="not a pinned AMD root key"):
        snp.verify(LabSnp(CHAIN, LAUNCH).attest(RD, ()), snp.SnpPolicy())


def _foreign() -> LabSnp:
    other = Chain.make()
    return LabSnp(other, LAUNCH)


@pytest.mark.parametrize("case,match", [
    ("foreign", "not a pinned AMD root key"),
    ("ask_by_other_key", "ASK: signature does not verify"),
    ("vcek_by_other_key", "VCEK: signature does not verify"),
    ("vcek_expired", "VCEK: not valid at"),
    ("chain_not_yet_valid", "ARK: not valid at"),
    ("vcek_revoked", "VCEK: revoked"),
    ("ask_revoked", "ASK: revoked"),
    ("crl_expired", "CRL: expired"),
    ("crl_forged", "CRL: signature does not verify"),
    ("not_pss", "not signed with RSASSA-PSS/SHA-384"),
    ("report_by_other_key", "report.signature: does not verify"),
    ("flipped_measurement", "report.signature: does not verify"),
    ("other_chip", "report.chip_id: the VCEK was issued for another chip"),
    ("other_tcb", "is not the VCEK's TCB"),
    ("debug", "allows debugging"),
    ("min_tcb", "snp 22 is below the minimum 23"),
    ("truncated", "an SNP attestation report is 1184"),
    ("missing_ask", "ASK and ARK are all needed"),
    ("garbage_vcek", "VCEK: not an X.509 certificate"),
])
def test_bad_chains_and_reports_are_refused(case: str, match: str) -> None:
    guest = LabSnp(CHAIN, LAUNCH)
    kw: dict = {}
    evidence = None
    if case == "foreign":
        guest = _foreign()
    elif case == "ask_by_other_key":
        other = Chain.make()
        bad_ask = Chain(CHAIN.ark_key, CHAIN.ask_key, CHAIN.ark, other.ask)
        guest = LabSnp(bad_ask, LAUNCH, vcek_cert=None)
        guest.vcek_cert = CHAIN.vcek(guest.key, signer=other.ask_key)
    elif case == "vcek_by_other_key":
        guest = LabSnp(CHAIN, LAUNCH)
        guest.vcek_cert = CHAIN.vcek(guest.key, signer=rsa.generate_private_key(65537, 2048))
    elif case == "vcek_expired":
        guest.vcek_cert = CHAIN.vcek(guest.key, not_before=NOW - dt.timedelta(days=30),
                                     not_after=NOW - dt.timedelta(days=1))
    elif case == "chain_not_yet_valid":
        kw["at"] = NOW - dt.timedelta(days=2)
    elif case == "vcek_revoked":
        kw["crls"] = (CHAIN.crl([guest.vcek_cert.serial_number]),)
    elif case == "ask_revoked":
        kw["crls"] = (CHAIN.crl([CHAIN.ask.serial_number]),)
    elif case == "crl_expired":
        kw["crls"] = (CHAIN.crl([], next_update=NOW - dt.timedelta(hours=2)),)
    elif case == "crl_forged":
        forger = Chain(rsa.generate_private_key(65537, 2048), CHAIN.ask_key, CHAIN.ark, CHAIN.ask)
        kw["crls"] = (forger.crl([]),)
    elif case == "not_pss":
        from snp_lab import _cert

        guest.vcek_cert = _cert("SEV-VCEK", "SEV-Milan", guest.key.public_key(), CHAIN.ask_key, ca=False, pss=False)
    elif case == "report_by_other_key":
        guest.key = ec.generate_private_key(ec.SECP384R1())
    elif case in ("flipped_measurement", "truncated"):
        ev = guest.attest(RD, ())
        raw = bytearray(ev.report)
        raw[0x90] ^= 1
        evidence = Evidence("sev-snp", bytes(raw if case == "flipped_measurement" else raw[:-1]), ev.certs)
    elif case == "other_chip":
        guest.vcek_cert = CHAIN.vcek(guest.key, chip_id=os.urandom(64))
    elif case == "other_tcb":
        guest.vcek_cert = CHAIN.vcek(guest.key, tcb={**TCB, "microcode": 200})
    elif case == "debug":
        guest.policy_bits |= snp.POLICY_DEBUG
    elif case == "min_tcb":
        kw["min_tcb"] = {"snp": 23}
    elif case == "missing_ask":
        guest.auxblob = False
        ev = guest.attest(RD, ())
        evidence = Evidence("sev-snp", ev.report, {k: v for k, v in ev.certs.items() if k != "ask"})
    elif case == "garbage_vcek":
        guest.auxblob = False
        ev = guest.attest(RD, ())
        evidence = Evidence("sev-snp", ev.report, {**ev.certs, "vcek": b"\x30\x03garbage"})
    with pytest.raises(EvidenceError, match=match):
        snp.verify(evidence or guest.attest(RD, ()), CHAIN.policy(**kw))


def test_debug_is_accepted_only_when_allowed() -> None:
    guest = LabSnp(CHAIN, LAUNCH, policy_bits=0x30000 | snp.POLICY_DEBUG)
    assert _verify(guest, allow_debug=True).details["debug"] is True


def test_cert_table_round_trip_and_garbage() -> None:
    table = snp.build_cert_table({"vcek": b"v" * 10, "ask": b"a" * 5, "ark": b"r" * 3})
    assert snp.parse_cert_table(table) == {"vcek": b"v" * 10, "ask": b"a" * 5, "ark": b"r" * 3}
    with pytest.raises(EvidenceError, match="points outside"):
        snp.parse_cert_table(table[:24])
    with pytest.raises(EvidenceError, match="no terminating entry"):
        snp.parse_cert_table(table[:16] + struct.pack("<II", 24, 0))
    with pytest.raises(EvidenceError, match="truncated entry"):
        snp.parse_cert_table(table[:16] + struct.pack("<II", 24, 0) + b"\x01" * 6)


# ------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def files(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("snp")
    guest = LabSnp(CHAIN, LAUNCH)
    (d / "report.bin").write_bytes(guest.report(RD))
    (d / "report.hex").write_text(guest.report(RD).hex() + "\n")
    (d / "vcek.der").write_bytes(der(guest.vcek_cert))
    (d / "vcek.pem").write_bytes(pem(guest.vcek_cert))
    (d / "ask.pem").write_bytes(pem(CHAIN.ask))
    (d / "ark.pem").write_bytes(pem(CHAIN.ark))
    (d / "crl.der").write_bytes(CHAIN.crl([guest.vcek_cert.serial_number]))
    return d


def _cli(d: Path, *extra: str, evidence: str = "report.bin", pin: bool = True) -> subprocess.CompletedProcess:
    argv = [SEALNET, "attest", "verify", "--tee", "sev-snp", "--evidence", str(d / evidence), "--vcek",
            str(d / "vcek.der"), "--ark", str(d / "ark.pem"), "--ask", str(d / "ask.pem"), *extra]
    if pin:
        argv += ["--pin-ark", str(d / "ark.pem")]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_cli_verifies_binary_and_hex_and_prints_json(files) -> None:
    for evidence in ("report.bin", "report.hex"):
        out = _cli(files, "--format", "json", "--report-data", RD.hex(), evidence=evidence)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["verified"] and doc["tee"] == "sev-snp" and doc["simulated"] is False
        assert doc["launch_measurement"] == LAUNCH_TEXT and doc["report_data"] == RD.hex()
        assert doc["reported_tcb"] == TCB and doc["tcb_status"] == "NotChecked"
    out = _cli(files, "--min-tcb", "bootloader=4,snp=22")
    assert out.returncode == 0 and "TCB UpToDate" in out.stdout


@pytest.mark.parametrize("extra,pin,match", [
    ((), False, "ARK: 'ARK-Milan' is not a pinned AMD root key"),
    (("--crl", "crl.der"), True, "VCEK: revoked"),
    (("--at", "2000-01-01T00:00:00Z"), True, "ARK: not valid at 2000-01-01"),
    (("--min-tcb", "microcode=250"), True, "microcode 213 is below the minimum 250"),
    (("--report-data", "00" * 64), True, "report data is not the expected value"),
    (("--at", "yesterday"), True, "--at: 'yesterday' is not an RFC 3339 time"),
    (("--min-tcb", "cpu=1"), True, "--min-tcb: 'cpu=1' is not NAME=SVN"),
])
def test_cli_refusals_are_one_line(files, extra, pin, match) -> None:
    extra = tuple(str(files / e) if e.endswith(".der") else e for e in extra)
    out = _cli(files, *extra, pin=pin)
    assert out.returncode == 1 and match in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_cli_refuses_garbage_evidence(files, tmp_path) -> None:
    for name, data in (("empty", b""), ("short", b"\x01" * 100), ("oddhex", b"abc"), ("nul", b"\0" * 0x4A0)):
        (files / name).write_bytes(data)
        out = _cli(files, evidence=name)
        assert out.returncode == 1 and "Traceback" not in out.stderr, (name, out.returncode, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (name, out.stderr)


# ------------------------------------------------------------------ SNP through the broker


def test_key_broker_releases_on_snp_evidence_and_refuses_bad_chains(tmp_path) -> None:
    m = manifest(tee="sev-snp")
    cp_guest, node_guest = LabSnp(CHAIN, LAUNCH), LabSnp(CHAIN, LAUNCH)
    revoked = LabSnp(CHAIN, LAUNCH)
    broken = LabSnp(CHAIN, LAUNCH)
    broken.vcek_cert = CHAIN.vcek(broken.key, signer=rsa.generate_private_key(65537, 2048))
    verifier = VerifierConfig(snp=CHAIN.policy(crls=(CHAIN.crl([revoked.vcek_cert.serial_number]),)))
    cp_platform = Platforms.make().cp  # only its sealing key is used: the CP attests with SNP below

    async def go() -> None:
        broker = make_broker(str(tmp_path / "cp.db"), "a", m, cp_platform, verifier)
        broker.config.attester = cp_guest.attest
        broker.server.attester = cp_guest.attest
        async with live(broker) as cp:
            rel = await control_client.attest(cp.url, domain="a", manifest=m, bundle_measurement=BUNDLE,
                                              attester=node_guest.attest, verifier=verifier)
            assert rel.sender == 1 and not rel.simulated
            expired = LabSnp(CHAIN, LAUNCH)
            expired.vcek_cert = CHAIN.vcek(expired.key, not_before=NOW - dt.timedelta(days=9),
                                           not_after=NOW - dt.timedelta(days=1))
            for bad in (_foreign(), expired, revoked, broken):
                with pytest.raises(ControlError) as err:
                    await control_client.attest(cp.url, domain="a", manifest=m, bundle_measurement=BUNDLE,
                                                attester=bad.attest, verifier=verifier)
                assert err.value.code == "evidence"
            assert cp.releases() == 1 and cp.codes() == ["evidence"] * 4
            reasons = [r.reason for r in cp.state.audit_rows() if r.event == "refuse"]
            for expected, reason in zip(("not a pinned AMD root", "not valid at", "revoked", "does not verify"),
                                        reasons):
                assert expected in reason, reasons
    run(go())


# ------------------------------------------------------------------ real published evidence


def _real(*extra: str) -> subprocess.CompletedProcess:
    argv = [SEALNET, "attest", "verify", "--tee", "sev-snp", "--evidence", str(DATA / "amd_milan_report.hex"),
            "--vcek", str(DATA / "amd_milan_vcek.der"), "--ask", str(DATA / "amd_ask_milan.pem"),
            "--ark", str(DATA / "amd_ark_milan.pem"), "--format", "json", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_a_real_milan_report_verifies_against_amds_own_chain() -> None:
    """A genuine report and VCEK (serial number 0, as AMD issues them) under the pinned production ARK."""
    out = _real()
    assert out.returncode == 0, out.stderr
    assert "Warning" not in out.stderr and "Traceback" not in out.stderr
    doc = json.loads(out.stdout)
    assert doc["product"] == "Milan" and doc["report_version"] == 2 and not doc["debug"]
    assert doc["launch_measurement"] == ("sha384:7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579"
                                         "ea158d3e1a0dc39b2c60bd95b9c480cd81841f")
    assert doc["reported_tcb"] == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    # AMD's own CRL, signed by the same ARK, names neither the ASK nor this VCEK (while it is current) ...
    assert _real("--crl", str(DATA / "amd_milan_crl.der"), "--at", "2026-09-01T00:00:00Z").returncode == 0
    # ... and once it is past its next update it no longer vouches for anything.
    late = _real("--crl", str(DATA / "amd_milan_crl.der"), "--at", "2026-10-05T00:00:00Z")
    assert late.returncode == 1 and "CRL: expired at 2026-10-04" in late.stderr
    assert "VCEK: not valid at" in _real("--at", "2031-01-01T00:00:00Z").stderr


def test_a_real_report_with_one_bit_changed_or_another_vcek_is_refused(tmp_path) -> None:
    raw = bytearray(bytes.fromhex((DATA / "amd_milan_report.hex").read_text()))
    raw[0x90] ^= 1
    (tmp_path / "flipped.bin").write_bytes(bytes(raw))
    out = subprocess.run([SEALNET, "attest", "verify", "--tee", "sev-snp", "--evidence", str(tmp_path / "flipped.bin"),
                          "--vcek", str(DATA / "amd_milan_vcek.der"), "--ask", str(DATA / "amd_ask_milan.pem"),
                          "--ark", str(DATA / "amd_ark_milan.pem")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "report.signature: does not verify" in out.stderr
    report = bytes.fromhex((DATA / "amd_milan_report.hex").read_text())
    ask = snp.load_cert((DATA / "amd_ask_milan.pem").read_bytes(), "ASK")
    ark = snp.load_cert((DATA / "amd_ark_milan.pem").read_bytes(), "ARK")
    forged = LabSnp(CHAIN, LAUNCH)  # a VCEK from another chain, presented with AMD's ASK and ARK
    with pytest.raises(EvidenceError, match="VCEK: signature does not verify with SEV-Milan"):
        snp.verify(Evidence("sev-snp", report, {"vcek": der(forged.vcek_cert), "ask": der(ask), "ark": der(ark)}),
                   snp.SnpPolicy())
