"""The verifier on hand-written policies: each finding kind, witnesses, CLI formats."""

from __future__ import annotations

import json

import pytest

from sealnet.compiler.cli import main
from sealnet.compiler.semantics import decide
from sealnet.compiler.verify import verify
from policies import DOMAINS, HEADER, compile_ok


def kinds(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Anomalies only (these policies have no workflows, so all traffic is unneeded)."""
    return [(f.kind, f.rules) for f in verify(compile_ok(HEADER + DOMAINS + text)).findings
            if f.kind != "over-permissive"]


def test_shadowed_redundant_unreachable() -> None:
    assert kinds("rule wide: deny from a to b\nrule narrow: seal tcp from a to b port 80\n") == [
        ("shadowed", ("narrow", "wide"))]
    assert kinds("rule wide: seal from a to b\nrule narrow: seal tcp from a to b port 80\n") == [
        ("redundant", ("narrow", "wide"))]
    assert kinds("rule t: deny tcp from a to b\nrule u: seal udp from a to b\n"
                 "rule both: seal from a to b port 53\n") == [("unreachable", ("both", "t", "u"))]
    assert kinds("rule none: seal icmp from a to !any\n") == [("unreachable", ("none",))]


def test_redundant_against_the_default() -> None:
    assert kinds("rule r: deny from a to b\n") == [("redundant", ("r",))]


def test_correlated_and_generalization() -> None:
    assert kinds("rule x: seal tcp from a to b\nrule y: allow plaintext from a to b port 80\n") == [
        ("correlated", ("y", "x"))]
    assert kinds("rule x: deny tcp from a to b port 80\nrule y: seal tcp from a to b\n") == [
        ("generalization", ("y", "x"))]


def test_assertions_workflows_least_privilege() -> None:
    policy = compile_ok(HEADER + DOMAINS + (
        "workflow w { s: a port 10\n t: b port 20\n s -> t tcp\n t -> s udp }\n"
        "rule plain: allow plaintext tcp from a to b port 20\n"
        "rule extra: seal tcp from a to c port 30\n"
        "assert sealed from a to b\nassert never from a to c\nassert reachable from c to a\n"
        "assert reachable tcp from a to b\nassert never from c to a\n"))
    report = verify(policy)
    found = [(f.kind, f.rules, f.span.line) for f in report.findings]
    assert ("assertion-failed", ("plain",), 11) in found          # sealed fails
    assert ("assertion-failed", ("extra",), 12) in found          # never fails
    assert ("assertion-failed", ("default",), 13) in found        # reachable fails
    assert ("workflow-blocked", ("plain",), 7) in found           # s -> t passes in plaintext
    assert ("workflow-blocked", ("default",), 8) in found         # t -> s denied
    assert ("over-permissive", ("extra",), 10) in found
    assert [p.text for p in report.proved] == ["assert reachable tcp from a to b", "assert never from c to a"]
    for f in report.findings:
        if f.witness is not None:
            assert decide(policy, f.witness).rule_name in f.rules or f.rules == ()


def test_cli_verify_json_and_exit_codes(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.policy"
    bad.write_text(HEADER + DOMAINS + "rule r: allow plaintext from a to b\nassert sealed from a to b\n")
    assert main(["verify", "--format", "json", str(bad)]) == 1
    data = json.loads(capsys.readouterr().out)
    (finding,) = [f for f in data["findings"] if f["kind"] == "assertion-failed"]
    assert set(finding) == {"kind", "severity", "rules", "message", "file", "line", "column", "witness"}
    assert set(finding["witness"]) == {"src", "dst", "proto", "sport", "dport"}
    assert finding["witness"]["src"].startswith("198.18.1.") and finding["witness"]["dst"].startswith("198.18.2.")

    warn = tmp_path / "warn.policy"
    warn.write_text(HEADER + DOMAINS + "rule r: deny from a to b\n")
    assert main(["verify", str(warn)]) == 0
    assert main(["verify", "--strict", str(warn)]) == 1
    out = capsys.readouterr().out
    assert "warning[V302]" in out


def test_lint_includes_verifier_findings(tmp_path, capsys) -> None:
    warn = tmp_path / "warn.policy"
    warn.write_text(HEADER + DOMAINS + "rule r: deny from a to b\n")
    assert main(["lint", "--format", "json", str(warn)]) == 0
    codes = [d["code"] for d in json.loads(capsys.readouterr().out)["diagnostics"]]
    assert codes == ["V302"]
    assert main(["lint", "--no-verify", "--format", "json", str(warn)]) == 0
    assert json.loads(capsys.readouterr().out)["diagnostics"] == []


def test_diff_cli(tmp_path, capsys) -> None:
    old = tmp_path / "old.policy"
    new = tmp_path / "new.policy"
    old.write_text(HEADER + DOMAINS + "rule r: seal tcp from a to b\n")
    new.write_text(HEADER + DOMAINS + "rule r: seal tcp from a to b\nrule s: deny tcp from a to b port 22\n")
    assert main(["diff", str(old), str(old)]) == 0
    assert "equivalent" in capsys.readouterr().out
    new.write_text(HEADER + DOMAINS + "rule s: deny tcp from a to b port 22\nrule r: seal tcp from a to b\n")
    assert main(["diff", "--format", "json", str(old), str(new)]) == 0  # as git diff: 1 only with --exit-code
    capsys.readouterr()
    assert main(["diff", "--exit-code", "--format", "json", str(old), str(new)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["status"] == "different"
    (group,) = data["changes"]
    assert (group["src_domain"], group["dst_domain"], group["old_action"], group["new_action"]) == ("a", "b", "seal", "deny")
    (region,) = group["regions"]
    assert (region["src"], region["dst"], region["proto"], region["dport"]) == (
        ["198.18.1.0/24"], ["198.18.2.0/24"], ["tcp"], ["22"])
    assert region["packets"] == 256 * 256
    (d,) = data["differences"]
    assert (d["old"]["rule"], d["old"]["action"], d["new"]["rule"], d["new"]["action"]) == ("r", "seal", "s", "deny")
    assert d["witness"]["dport"] == 22 and d["witness"]["proto"] == "tcp"
    broken = tmp_path / "broken.policy"
    broken.write_text("policy x\n")
    assert main(["diff", str(old), str(broken)]) == 1  # a policy with errors: its errors are the findings
    capsys.readouterr()
    assert main(["diff", "--format", "json", str(old), str(broken)]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "error"
    assert main(["diff", str(old), str(tmp_path / "missing.policy")]) == 2  # unreadable input


@pytest.mark.parametrize("name", ["pipeline", "genomics", "federation"])
def test_examples_verify_clean(name: str) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.policy"
    report = verify(compile_ok(path.read_text(), str(path)))
    assert report.findings == [] and len(report.proved) >= 4


def test_blocking_set_names_only_the_rule_that_decides() -> None:
    """The issue's example: r1 matches r2's packets too, but r0 decides all of them."""
    found = kinds("rule r0: allow plaintext tcp from any to 198.18.0.0/15\n"
                  "rule r1: allow plaintext tcp from !c to b\n"
                  "rule r2: seal tcp from !c to b\n")
    assert ("shadowed", ("r2", "r0")) in found


def test_batfish_classic_blocking_set_and_grouped_warnings() -> None:
    """254 single-host deny lines, a broad line, then a narrow one (Batfish filterLineReachability)."""
    hosts = "".join(f"rule h{i}: deny tcp from 198.18.1.{i} to b\n" for i in range(1, 255))
    policy = compile_ok(HEADER + DOMAINS + hosts + "rule broad: allow plaintext tcp from a to b\n"
                        "rule narrow: seal tcp from 198.18.1.0/28 to b port 443\n")
    report = verify(policy)
    (narrow,) = [f for f in report.findings if f.rules[0] == "narrow"]
    assert narrow.kind == "shadowed"  # denied by hosts, allowed (not sealed) by broad
    assert narrow.rules == ("narrow", "broad")  # broad alone matches all its packets: no host line is needed
    broad = [f for f in report.findings if f.rules[0] == "broad" and f.kind in ("correlated", "generalization")]
    assert len(broad) == 1 and len(broad[0].rules) == 255  # one warning naming the 254 host lines
    assert decide(policy, narrow.witness).rule_name == "broad"  # the witness shows the flagged rule deciding
    assert broad[0].witness.src & 0xFF != 0  # a host, not the network address


def test_two_processes_report_what_one_does(monkeypatch) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from gen_mix import generate
    from sealnet.compiler import verify as verifier

    policy = compile_ok(generate(300))
    monkeypatch.setattr(verifier, "PARALLEL_MIN_RULES", 10**9)
    one = verify(policy).to_json()
    monkeypatch.setattr(verifier, "PARALLEL_MIN_RULES", 10)
    assert verify(policy).to_json() == one


def test_diff_parses_both_policies_at_once_alike(tmp_path, capsys, monkeypatch) -> None:
    from sealnet.compiler.commands import _common

    old = tmp_path / "old.policy"
    new = tmp_path / "new.policy"
    old.write_text(HEADER + DOMAINS + "rule r: seal tcp from a to b\n")
    new.write_text(HEADER + DOMAINS + "rule s: deny tcp from a to b port 22\nrule r: seal tcp from a to b\n")
    outputs = []
    for limit in (10**12, 0):  # serial, then the second file in a forked child
        monkeypatch.setattr(_common, "PARALLEL_LOAD_BYTES", limit)
        assert main(["diff", "--format", "json", str(old), str(new)]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    assert outputs[0] == outputs[1] and outputs[0]["status"] == "different"



def _verify_in_a_daemon(policy, out) -> None:  # type: ignore[no-untyped-def]
    out.send(verify(policy).to_json())


def test_a_daemonic_process_verifies_in_one_process(monkeypatch) -> None:
    """The language server verifies in a daemonic worker, which may not start the
    verifier's second process: it must check alone instead of failing."""
    import multiprocessing
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from gen_mix import generate
    from sealnet.compiler import verify as verifier

    policy = compile_ok(generate(300))
    one = verify(policy).to_json()
    monkeypatch.setattr(verifier, "PARALLEL_MIN_RULES", 10)  # large enough to fork, were it allowed
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)
    worker = context.Process(target=_verify_in_a_daemon, args=(policy, writer), daemon=True)
    worker.start()
    try:
        assert reader.poll(120), "no answer from the verifier inside a daemonic process"
        assert reader.recv() == one
    finally:
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
    assert worker.exitcode == 0
