"""`sealnet controlplane serve` as a process, on a real signed bundle: release, kill -9, resume; bad flags."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cp_lab import LAUNCH, LAUNCH_TEXT
from sealnet.contracts.bundle import load_bundle
from sealnet.contracts.signing import load_public
from sealnet.compiler.cli import main as policyc
from sealnet.runtime import control_client
from sealnet.runtime.attest.sim import load_platform, public_fingerprint
from sealnet.runtime.attest.verifier import VerifierConfig

SEALNET = str(Path(sys.executable).with_name("sealnet"))
POLICY = f"""policy "cp" version 1
domain a {{ tee sim; nodes 198.18.1.0/24; measurement "{LAUNCH_TEXT}"; control 127.0.0.1:7443 }}
domain b {{ tee sim; nodes 198.18.2.0/24; measurement "{LAUNCH_TEXT}" }}
rule ab: seal tcp from a to b port 7000
rule ba: seal tcp from b to a port 7000
default deny
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("cp")
    (d / "p.policy").write_text(POLICY)
    assert policyc(["keygen", str(d / "auth")]) == 0
    assert policyc(["compile", str(d / "p.policy"), "-o", str(d / "p.bundle"), "--sign-key", str(d / "auth")]) == 0
    for name in ("cp", "node"):
        assert subprocess.run([SEALNET, "attest", "sim-keygen", str(d / name)], capture_output=True).returncode == 0
    return d


def _serve(d: Path, db: str, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([SEALNET, "controlplane", "serve", "--bundle", str(d / "p.bundle"), "--trust",
                             str(d / "auth.pub"), "--domain", "a", "--db", db, "--listen", "127.0.0.1:0",
                             "--sim-platform", str(d / "cp"), "--sim-launch", LAUNCH_TEXT,
                             "--allow-sim", str(d / "cp.pub"), "--allow-sim", str(d / "node.pub"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(10)
        raise AssertionError(f"serve did not start: {proc.stderr.read() if proc.stderr else ''}")
    assert "SIMULATED" in line
    port = line.split(" on ")[1].split(";")[0].split(" ")[0].rsplit(":", 1)[1]
    return proc, f"http://127.0.0.1:{port}"


def _attest(d: Path, url: str, n: int) -> list[int]:
    verified = load_bundle((d / "p.bundle").read_bytes(), load_public(str(d / "auth.pub")))
    node = load_platform(str(d / "node"), LAUNCH)
    cp_key = load_platform(str(d / "cp"), LAUNCH)
    verifier = VerifierConfig(sim_platforms=frozenset({public_fingerprint(cp_key.key.public_key())}))

    async def go() -> list[int]:
        out = []
        for _ in range(n):
            rel = await control_client.attest(url, domain="a", manifest=verified.manifest,
                                              bundle_measurement=verified.measurement, attester=node.attest,
                                              verifier=verifier)
            assert [p.domains for p in rel.key_file().pairs] == [("a", "b")]
            out.append(rel.sender)
        return out
    return asyncio.run(go())


def test_serve_releases_survives_kill_9_and_never_reuses_a_sender(lab, tmp_path) -> None:
    db = str(tmp_path / "cp.db")
    proc, url = _serve(lab, db)
    try:
        assert _attest(lab, url, 3) == [1, 2, 3]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    proc, url = _serve(lab, db)
    try:
        assert _attest(lab, url, 2) == [4, 5]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    out = subprocess.run([SEALNET, "controlplane", "audit", "--db", db, "--format", "json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["chain_intact"]
    text = subprocess.run([SEALNET, "controlplane", "audit", "--db", db], capture_output=True, text=True).stdout
    assert text.count("keys released (SIMULATED evidence)") == 5 and "chain intact" in text
    assert [r["detail"]["sender"] for r in doc["rows"] if r["event"] == "release"] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("change,message", [
    (("--domain", "zz"), "'zz' is not a domain of the bundle's policy"),
    (("--listen", "nowhere"), "--listen: 'nowhere' is not HOST:PORT"),
    (("--trust", "cp.pub"), "not an Ed25519 key"),
    (("--sim-launch", "sha384:12"), "--sim-launch: required with --sim-platform"),
    (("--bundle", "p.policy"), "refused: magic: not a sealnet bundle"),
])
def test_bad_flags_are_one_line_errors(lab, tmp_path, change, message) -> None:
    flags = {"--bundle": str(lab / "p.bundle"), "--trust": str(lab / "auth.pub"), "--domain": "a",
             "--db": str(tmp_path / "cp.db"), "--listen": "127.0.0.1:0", "--sim-platform": str(lab / "cp"),
             "--sim-launch": LAUNCH_TEXT}
    key, value = change
    flags[key] = str(lab / value) if value in ("cp.pub", "p.policy") else value
    argv = [SEALNET, "controlplane", "serve"] + [x for kv in flags.items() for x in kv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert not os.path.exists(tmp_path / "cp.db") or key != "--bundle"
