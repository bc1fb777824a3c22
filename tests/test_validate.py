"""Translation validation in the kernel: every example and generated policies.

Cost: ~15 s (one clang build + load + ~1-5k test runs per policy; 8 hypothesis policies).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from sealnet.compiler.build import build_object
from sealnet.compiler.frontend import load_policy
from sealnet.compiler.ir import Packet
from sealnet.compiler.validate import validate
from policies import DOMAINS, HEADER, compile_ok
from strategies import policies

pytestmark = pytest.mark.kernel

EXAMPLES = sorted(Path(__file__).resolve().parent.parent.joinpath("examples").glob("*.policy"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_validates(path: Path) -> None:
    policy, diagnostics = load_policy(str(path))
    assert policy is not None, diagnostics
    report = validate(policy, build_object(policy), random_count=128)
    assert report.ok, [str(m) for m in report.mismatches[:10]]
    assert report.packets > 2 * len(policy.rules)
    # Every rule that some packet reaches got a Z3 witness.
    assert report.z3_witnesses + len(report.rules_without_witness) == len(policy.rules)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_generated_policies_validate(text: str) -> None:
    policy = compile_ok(text)
    report = validate(policy, build_object(policy), random_count=64)
    assert report.ok, [str(m) for m in report.mismatches[:10]]


def test_a_wrong_object_is_caught_with_the_packet() -> None:
    """Validation is not vacuous: an object built from another policy fails it."""
    source = compile_ok(HEADER + DOMAINS + "rule web: allow plaintext tcp from a to b port 80\ndefault deny\n")
    other = compile_ok(HEADER + DOMAINS + "rule web: allow plaintext tcp from a to b port 81\ndefault deny\n")
    report = validate(source, build_object(other), random_count=16)
    assert not report.ok
    ports = {m.packet.dport for m in report.mismatches if m.packet.proto == 6}
    assert {80, 81} <= ports
    assert any("rule web" in m.expected_rule and m.observed_rule == "default" for m in report.mismatches)
    assert report.to_json()["ok"] is False


def test_shadowed_rule_has_no_witness() -> None:
    policy = compile_ok(
        HEADER + DOMAINS + "rule wide: deny from a to b\nrule narrow: allow plaintext tcp from a to b port 80\n"
    )
    report = validate(policy, build_object(policy), random_count=16)
    assert report.ok
    assert report.rules_without_witness == ["narrow"]


def test_host_rules_around_domain_rules_validate() -> None:
    """Narrow (host) and wide lists answer separately: the earlier rule of the two must win."""
    rules = []
    for i in range(6):
        rules.append(f"rule h{i}: deny tcp from 198.18.1.{i + 1} to b port {80 + i}-{90 + i}")
        rules.append(f"rule w{i}: allow plaintext tcp from a to b port {85 + i}")
    rules.append("rule hu: allow plaintext udp from 198.18.1.3 to 198.18.2.9")
    rules.append("rule wu: deny udp from a to b")
    policy = compile_ok(HEADER + DOMAINS + "\n".join(rules) + "\ndefault deny\n")
    report = validate(policy, build_object(policy), random_count=256)
    assert report.ok, [str(m) for m in report.mismatches[:10]]
    assert not report.rules_without_witness
