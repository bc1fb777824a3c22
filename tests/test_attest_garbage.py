"""Garbage into every evidence parser: only a one-line EvidenceError comes out, never another exception."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from cp_lab import LAUNCH
from sealnet.runtime.attest import der, sim, snp, tdx
from sealnet.runtime.attest.evidence import Evidence, EvidenceError
from sealnet.runtime.attest.sim import SimPlatform
from sealnet.runtime.attest.tsm import TsmAttester

import pytest

SEALNET = str(Path(sys.executable).with_name("sealnet"))
PLATFORM = SimPlatform.generate(LAUNCH)


def _only_evidence_errors(fn, *args) -> None:  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except EvidenceError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parsers_refuse_garbage_cleanly(data: bytes) -> None:
    _only_evidence_errors(der.parse, data)
    _only_evidence_errors(snp.parse_cert_table, data)
    _only_evidence_errors(snp.parse_report, data)
    _only_evidence_errors(tdx.parse_quote, data)
    _only_evidence_errors(tdx.load_collateral, data)
    _only_evidence_errors(sim.verify, Evidence("sim", data, {"platform": data}), {"x"})


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0x4A0, max_size=0x4A0))
def test_random_reports_never_verify(data: bytes) -> None:
    with pytest.raises(EvidenceError):
        sim.verify(Evidence("sim", data, {"platform": sim.spki_der(PLATFORM.key.public_key())}),
                   {sim.public_fingerprint(PLATFORM.key.public_key())})


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
                    max_leaves=20))
def test_evidence_json_refuses_any_shape(doc) -> None:  # type: ignore[no-untyped-def]
    _only_evidence_errors(Evidence.from_json, doc)
    good = PLATFORM.attest(bytes(64), ()).to_json()
    if isinstance(doc, dict):
        _only_evidence_errors(Evidence.from_json, {**good, **doc})


def test_evidence_json_round_trip_and_limits() -> None:
    ev = PLATFORM.attest(bytes(64), ())
    assert Evidence.from_json(json.loads(json.dumps(ev.to_json()))) == ev
    big = ev.to_json()
    big["report"] = base64.b64encode(bytes(70_000)).decode()
    with pytest.raises(EvidenceError, match="at most 65536 bytes"):
        Evidence.from_json(big)


def test_no_configfs_tsm_here_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(EvidenceError, match="no configfs-tsm report interface"):
        TsmAttester(str(tmp_path / "absent"))


def test_cli_sim_evidence_says_simulated(tmp_path) -> None:
    key = tmp_path / "platform"
    out = subprocess.run([SEALNET, "attest", "sim-keygen", str(key)], capture_output=True, text=True)
    assert out.returncode == 0 and "SIMULATED" in out.stdout
    again = subprocess.run([SEALNET, "attest", "sim-keygen", str(key)], capture_output=True, text=True)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    platform = sim.load_platform(str(key), LAUNCH)
    (tmp_path / "report.bin").write_bytes(platform.attest(bytes(range(64)), ()).report)
    argv = [SEALNET, "attest", "verify", "--tee", "sim", "--evidence", str(tmp_path / "report.bin")]
    out = subprocess.run(argv + ["--platform", f"{key}.pub"], capture_output=True, text=True)
    assert out.returncode == 0 and "SIMULATED" in out.stdout, out.stderr
    doc = json.loads(subprocess.run(argv + ["--platform", f"{key}.pub", "--format", "json"],
                                    capture_output=True, text=True).stdout)
    assert doc["simulated"] is True and doc["tcb_status"] == "Simulated"
    other = SimPlatform.generate(LAUNCH)
    (tmp_path / "other.pub").write_bytes(other.public_pem())
    out = subprocess.run(argv + ["--platform", str(tmp_path / "other.pub")], capture_output=True, text=True)
    assert out.returncode == 1 and "does not verify with the simulated platform key" in out.stderr


def test_a_certificate_with_an_unusual_key_is_a_refusal_not_a_traceback() -> None:
    """An Ed25519 'VCEK' makes the ECDSA path meet a key type it does not expect."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.x509.oid import NameOID

    from snp_lab import Chain, PSS, der
    from cryptography.hazmat.primitives import hashes

    chain = Chain.make()
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SEV-VCEK")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(chain.ask.subject).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
            .sign(chain.ask_key, hashes.SHA384(), rsa_padding=PSS))
    report = snp.sign_body(snp.build_body(report_data=bytes(64), measurement=LAUNCH), PLATFORM.key)
    ev = Evidence("sev-snp", report, {"vcek": der(cert), "ask": der(chain.ask), "ark": der(chain.ark)})
    with pytest.raises(EvidenceError, match="report.signature"):
        snp.verify(ev, chain.policy())
