"""TDX: TD quote v4 verified offline from PCS collateral like Intel's QVL; `sealnet attest verify --tee tdx`;
TDX evidence through the key broker with the bundle measurement replayed into RTMR3."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from cp_lab import BUNDLE, LAUNCH, Platforms, live, make_broker, manifest, run
from sealnet.runtime import control_client
from sealnet.runtime.attest import tdx
from sealnet.runtime.attest.evidence import BUNDLE_REGISTER, Evidence, EvidenceError, LogEntry
from sealnet.runtime.attest.snp import spki_fingerprint
from sealnet.runtime.attest.verifier import VerifierConfig
from sealnet.runtime.control_client import ControlError
from tdx_lab import NOW, IntelWorld, LabTd, _p256

SEALNET = str(Path(sys.executable).with_name("sealnet"))
DATA = Path(__file__).parent / "data"
WORLD = IntelWorld()
RD = bytes(range(64))
LOG = (LogEntry(BUNDLE_REGISTER, "bundle", BUNDLE),)
QE_REPORT_AT = 48 + 584 + 4 + 64 + 64 + 6


def _ok(quote: bytes, log=(), **kw):  # type: ignore[no-untyped-def]
    return tdx.verify(Evidence("tdx", quote, {}, log), WORLD.policy(**kw))


def test_a_good_quote_verifies_with_its_measurements_and_tcb_status() -> None:
    td = LabTd(WORLD, LAUNCH)
    v = _ok(td.quote(RD, LOG), LOG)
    assert v.tee == "tdx" and not v.simulated
    assert v.launch_measurement == "sha384:" + LAUNCH.hex() and v.report_data == RD
    # The PCK's SGX SVNs reach the second TCB level only; the QE is up to date: the worse wins.
    assert v.tcb_status == "SWHardeningNeeded" and v.details["qe_status"] == "UpToDate"
    assert v.bundle_measurement == BUNDLE
    assert v.details["rtmr3"] != "00" * 48 and v.details["rtmr2"] == "00" * 48


def test_the_real_intel_root_is_the_pinned_one() -> None:
    root = x509.load_pem_x509_certificate((DATA / "intel_sgx_root_ca.pem").read_bytes())
    assert tdx.PINNED_ROOTS[spki_fingerprint(root)] == "Intel SGX Root CA"
    root.verify_directly_issued_by(root)
    policy = tdx.TdxPolicy(tdx.load_collateral(json.dumps(WORLD.collateral()).encode()))  # Intel's root only
    with pytest.raises(EvidenceError, match="not the pinned Intel SGX Root CA"):
        tdx.verify(Evidence("tdx", LabTd(WORLD, LAUNCH).quote(RD)), policy)


def _flip(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 1
    return bytes(out)


@pytest.mark.parametrize("case,match", [
    ("body", "quote.signature: does not verify"),
    ("qe_report", "QE report: signature does not verify with the PCK"),
    ("qe_auth", "QE report data: does not bind"),
    ("pck_revoked", "is revoked (pck_crl)"),
    ("ca_revoked", "is revoked (root_ca_crl)"),
    ("crl_expired", "pck_crl: expired"),
    ("crl_foreign", "root_ca_crl: not signed by"),
    ("tcb_info_expired", "tcb_info: expired"),
    ("tcb_info_forged", "tcb_info: signature does not verify"),
    ("fmspc", "tcb_info.fmspc"),
    ("no_level", "no TCB level matches"),
    ("out_of_date", "TCB status OutOfDate: not accepted"),
    ("revoked_level", "TCB status Revoked: not accepted"),
    ("qe_out_of_date", "TCB status OutOfDate: not accepted"),
    ("qe_signer", "MRSIGNER is not Intel's"),
    ("debug", "the TD is debuggable"),
    ("rtmr", "does not give the quote's RTMR3"),
    ("pck_expired", "not valid at"),
    ("before_everything", "not valid at"),
    ("truncated", "quote: "),
    ("version", "only TD quote version 4"),
    ("tee_type", "is not TDX"),
    ("seam_signer", "the TDX module is not signed"),
])
def test_bad_quotes_and_collateral_are_refused(case: str, match: str) -> None:
    td = LabTd(WORLD, LAUNCH)
    coll, kw, log = None, {}, LOG
    quote = None
    if case == "body":
        quote = _flip(td.quote(RD, LOG), 48 + 136)
    elif case == "qe_report":
        quote = _flip(td.quote(RD, LOG), QE_REPORT_AT + 130)
    elif case == "qe_auth":
        quote = _flip(td.quote(RD, LOG), QE_REPORT_AT + 384 + 64 + 2 + 3)
    elif case == "pck_revoked":
        coll = WORLD.collateral(pck_crl=WORLD.crl(WORLD.ca_key, WORLD.ca, [WORLD.pck.serial_number]))
    elif case == "ca_revoked":
        coll = WORLD.collateral(root_crl=WORLD.crl(WORLD.root_key, WORLD.root, [WORLD.ca.serial_number]))
    elif case == "crl_expired":
        coll = WORLD.collateral(pck_crl=WORLD.crl(WORLD.ca_key, WORLD.ca, next_update=NOW - dt.timedelta(hours=1)))
    elif case == "crl_foreign":
        coll = WORLD.collateral(root_crl=WORLD.crl(_p256(), WORLD.root))
    elif case == "tcb_info_expired":
        coll = WORLD.collateral(tcb_info=WORLD.tcb_info(nextUpdate="2020-01-01T00:00:00Z"))
    elif case == "tcb_info_forged":
        coll = WORLD.collateral(tcb_sig_key=_p256())
    elif case == "fmspc":
        coll = WORLD.collateral(tcb_info=WORLD.tcb_info(fmspc="00906ed50000"))
    elif case == "no_level":
        coll = WORLD.collateral(tcb_info=WORLD.tcb_info(tcbLevels=WORLD.tcb_info()["tcbLevels"][:1]))
    elif case in ("out_of_date", "revoked_level"):
        levels = WORLD.tcb_info()["tcbLevels"]
        levels[1]["tcbStatus"] = "OutOfDate" if case == "out_of_date" else "Revoked"
        coll = WORLD.collateral(tcb_info=WORLD.tcb_info(tcbLevels=levels))
    elif case == "qe_out_of_date":
        td.qe_isvsvn = 3
    elif case == "qe_signer":
        coll = WORLD.collateral(qe_identity=WORLD.qe_identity(mrsigner="00" * 32))
    elif case == "debug":
        td.td_attributes = 1
    elif case == "rtmr":
        td.rtmr_override = {3: bytes(48)}
    elif case == "pck_expired":
        td.pck = WORLD.make_pck(not_before=NOW - dt.timedelta(days=9), not_after=NOW - dt.timedelta(days=1))
    elif case == "before_everything":
        kw["at"] = NOW - dt.timedelta(days=3)
    elif case == "truncated":
        quote = td.quote(RD, LOG)[:-100]
    elif case == "version":
        quote = b"\x03" + td.quote(RD, LOG)[1:]
    elif case == "tee_type":
        quote = td.quote(RD, LOG)[:4] + b"\x00" + td.quote(RD, LOG)[5:]
    elif case == "seam_signer":
        coll = WORLD.collateral(tcb_info=WORLD.tcb_info(tdxModule={"mrsigner": "11" * 48, "attributes": "00" * 8,
                                                                  "attributesMask": "ff" * 8}))
    with pytest.raises(EvidenceError, match=re.escape(match)):
        tdx.verify(Evidence("tdx", quote or td.quote(RD, LOG), {}, log), WORLD.policy(coll, **kw))


@pytest.mark.parametrize("doc,match", [
    ("not json", "not JSON"),
    ("[]", "expected a JSON object"),
    ('{"tcb_info": "x"}', "missing key 'pck_crl_issuer_chain'"),
])
def test_garbage_collateral_is_a_one_line_error(doc: str, match: str) -> None:
    with pytest.raises(EvidenceError, match=match):
        tdx.load_collateral(doc.encode(), "c.json")
    coll = WORLD.collateral()
    coll["pck_crl"] = "zz"
    with pytest.raises(EvidenceError, match="pck_crl: not hexadecimal"):
        tdx.load_collateral(json.dumps(coll).encode(), "c.json")


# ------------------------------------------------------------------ the CLI


@pytest.fixture(scope="module")
def files(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("tdx")
    td = LabTd(WORLD, LAUNCH)
    (d / "quote.bin").write_bytes(td.quote(RD))
    (d / "quote.hex").write_text(td.quote(RD).hex())
    (d / "collateral.json").write_text(json.dumps(WORLD.collateral()))
    (d / "root.pem").write_bytes(WORLD.policy().root_ca or b"")
    return d


def _cli(d: Path, *extra: str, evidence: str = "quote.bin", root: bool = True) -> subprocess.CompletedProcess:
    argv = [SEALNET, "attest", "verify", "--tee", "tdx", "--evidence", str(d / evidence), "--collateral",
            str(d / "collateral.json"), *extra] + (["--root-ca", str(d / "root.pem")] if root else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def test_cli_verifies_and_names_mrtd_rtmrs_report_data_and_tcb(files) -> None:
    for evidence in ("quote.bin", "quote.hex"):
        out = _cli(files, "--format", "json", evidence=evidence)
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        assert doc["tee"] == "tdx" and doc["mrtd"] == LAUNCH.hex() and doc["report_data"] == RD.hex()
        assert {f"rtmr{i}" for i in range(4)} <= set(doc) and doc["tcb_status"] == "SWHardeningNeeded"
    assert "rtmr3" in _cli(files).stdout


@pytest.mark.parametrize("extra,root,match", [
    ((), False, "not the pinned Intel SGX Root CA"),
    (("--at", "2001-01-01T00:00:00+00:00"), True, "not valid at 2001-01-01"),
    (("--at", (NOW + dt.timedelta(days=45)).isoformat()), True, "expired at"),
])
def test_cli_refusals_are_one_line(files, extra, root, match) -> None:
    out = _cli(files, *extra, root=root)
    assert out.returncode == 1 and match in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_cli_garbage_quote(files) -> None:
    (files / "garbage").write_bytes(b"\x04\x00\x02\x00" + b"\xff" * 700)
    out = _cli(files, evidence="garbage")
    assert out.returncode == 1 and "does not verify: quote" in out.stderr and "Traceback" not in out.stderr


# ------------------------------------------------------------------ TDX through the broker


def test_key_broker_on_tdx_evidence(tmp_path) -> None:
    m = manifest(tee="tdx")
    verifier = VerifierConfig(tdx=WORLD.policy())
    cp_td, node_td = LabTd(WORLD, LAUNCH), LabTd(WORLD, LAUNCH)
    lying = LabTd(WORLD, LAUNCH, rtmr_override={3: bytes(48)})  # claims the bundle, RTMR3 says otherwise

    async def go() -> None:
        broker = make_broker(str(tmp_path / "cp.db"), "a", m, Platforms.make().cp, verifier)
        broker.server.attester = cp_td.attest
        async with live(broker) as cp:
            rel = await control_client.attest(cp.url, domain="a", manifest=m, bundle_measurement=BUNDLE,
                                              attester=node_td.attest, verifier=verifier)
            assert rel.sender == 1 and not rel.simulated
            with pytest.raises(ControlError) as err:
                await control_client.attest(cp.url, domain="a", manifest=m, bundle_measurement=BUNDLE,
                                            attester=lying.attest, verifier=verifier)
            assert err.value.code == "evidence"
            assert cp.releases() == 1 and cp.codes() == ["evidence"]
    run(go())
