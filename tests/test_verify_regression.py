"""The verifier's whole report on a generated policy of 2,000 rules (benchmarks/gen_mix.py:
sub-domain CIDRs, negations, ranges, port sets, broad rules, copies) equals the one recorded
from the straightforward implementation (commit 1c07f9b) before the cube arithmetic was made
fast: same findings, blocking sets, witnesses and outcomes, in two processes and in one.

The record (tests/golden/verify_mix2000.json.gz) is `Report.to_json()` without file names.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

from sealnet.compiler import verify as verifier
from policies import compile_ok

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gen_mix  # noqa: E402

RECORD = Path(__file__).resolve().parent / "golden" / "verify_mix2000.json.gz"


def _without_files(value):
    if isinstance(value, dict):
        return {k: _without_files(v) for k, v in value.items() if k != "file"}
    if isinstance(value, list):
        return [_without_files(v) for v in value]
    return value


@pytest.fixture(scope="module")
def policy():
    return compile_ok(gen_mix.generate(2000), "mix2000.policy")


@pytest.fixture(scope="module")
def recorded():
    return json.loads(gzip.decompress(RECORD.read_bytes()))


def test_report_is_the_recorded_one(policy, recorded):
    assert len(policy.rules) >= verifier.PARALLEL_MIN_RULES  # the two-process path
    report = _without_files(json.loads(json.dumps(verifier.verify(policy).to_json())))
    assert report == recorded


def test_one_process_gives_the_same_report(policy, recorded, monkeypatch):
    monkeypatch.setattr(verifier, "PARALLEL_MIN_RULES", 10**9)
    report = _without_files(json.loads(json.dumps(verifier.verify(policy).to_json())))
    assert report == recorded
