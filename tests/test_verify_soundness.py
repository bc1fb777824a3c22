"""Three answers, never two: what the solver cannot decide is unknown and fails; Ctrl-C stops the run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import z3

from sealnet.compiler.solving import Budget, Session, Status, Undecided
from sealnet.compiler.verify import verify
from policies import DOMAINS, HEADER, compile_ok

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from gen_policy import generate  # noqa: E402

# An assertion that fails, one that holds, a flow: each needs a region cut by earlier rules.
POLICY = HEADER + DOMAINS + (
    "workflow w { s: a port 10\n t: b port 20\n s -> t tcp }\n"
    "rule x: seal tcp from a to b port 20\n"
    "rule y: allow plaintext tcp from a to b port 10-30\n"
    "rule z: deny from c to a\n"
    "assert sealed tcp from a to b port 20\n"
    "assert sealed tcp from a to b\n"
    "assert never from c to a\n")


def policyc(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealnet.compiler.cli", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, **kw)


def test_the_same_policy_is_decided_with_room() -> None:
    report = verify(compile_ok(POLICY))
    assert [o.status for o in report.assertions] == [Status.PROVED, Status.REFUTED, Status.PROVED]
    assert [o.status for o in report.flows] == [Status.PROVED]
    assert report.status is Status.REFUTED and not report.unknown
    # the solver alone (no cube arithmetic) gives the same answers
    solver_only = verify(compile_ok(POLICY), budget=Budget(cubes=0))
    assert [o.status for o in solver_only.assertions] == [o.status for o in report.assertions]


def test_an_exhausted_budget_is_unknown_never_proved() -> None:
    report = verify(compile_ok(POLICY), budget=Budget(total=1e-9, cubes=0))
    statuses = [o.status for o in report.assertions]
    assert statuses[1] is not Status.PROVED and Status.UNKNOWN in statuses
    assert all(o.reason == "total budget exhausted" for o in report.unknown)
    assert report.unknown and report.status in (Status.UNKNOWN, Status.REFUTED)
    assert not any(p.text == "assert sealed tcp from a to b" for p in report.proved)


def test_a_query_timeout_is_unknown() -> None:
    """A hard query (64-bit factoring) under a tiny timeout: Undecided('timeout'), not 'no model'."""
    x, y = z3.BitVecs("x y", 64)
    session = Session(Budget(query_timeout=0.01, total=None))
    hard = (x * y == 0xFFFFFFFFFFFFFFC5 * 3 + 12345678911, x > 1, y > 1, z3.ULT(x, 2**40), z3.ULT(y, 2**40))
    with pytest.raises(Undecided) as exc:
        session.model(*hard)
    assert exc.value.reason == "timeout"


def test_cli_exits_3_on_unknown_and_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "p.policy"
    path.write_text(POLICY.replace("assert sealed tcp from a to b\n", ""))  # nothing fails outright
    ok = policyc("verify", str(path))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for command in (["verify"], ["lint"]):
        proc = policyc(*command, "--cube-budget", "0", "--budget", "0.000001", "--format", "json", str(path))
        assert proc.returncode == 3, proc.stdout + proc.stderr
        data = json.loads(proc.stdout)
        assert data["status"] == "unknown"
    data = json.loads(policyc("verify", "--cube-budget", "0", "--budget", "0.000001", "--format", "json",
                              str(path)).stdout)
    assert data["unknown"] and all(u["reason"] == "total budget exhausted" for u in data["unknown"]), data["unknown"]
    text = policyc("verify", "--cube-budget", "0", "--budget", "0.000001", str(path))
    assert text.returncode == 3 and "unknown" in text.stdout and "V330" in text.stdout


def test_compile_refuses_an_undecided_policy(tmp_path: Path) -> None:
    path = tmp_path / "p.policy"
    path.write_text(POLICY.replace("assert sealed tcp from a to b\n", ""))
    key = tmp_path / "k"
    assert policyc("keygen", str(key)).returncode == 0
    out = tmp_path / "out.bundle"
    proc = policyc("compile", str(path), "-o", str(out), "--sign-key", str(key),
                   "--cube-budget", "0", "--budget", "0.000001")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert not out.exists()


def test_ctrl_c_stops_verify_at_once_without_a_report(tmp_path: Path) -> None:
    path = tmp_path / "big.policy"
    # Large enough that on an idle machine the run is still verifying well after 4 s
    # (10,000 rules finished in about 6 s once the verifier got faster): a SIGINT
    # that lands after the report has started would prove nothing. The solver
    # does every check (cube budget 0), so SIGINT lands inside Z3 most of the time.
    path.write_text(generate(20000))
    proc = subprocess.Popen([sys.executable, "-m", "sealnet.compiler.cli", "verify", "--cube-budget", "0",
                             "--format", "json", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        time.sleep(4)
        assert proc.poll() is None, "verify finished before it could be interrupted"
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert time.monotonic() - sent < 5
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err[-500:])
    assert out == "" and "Traceback" not in err


def test_ctrl_c_inside_a_finaliser_still_stops_policyc(tmp_path: Path) -> None:
    """Python prints and drops a KeyboardInterrupt raised in a __del__ (z3 frees
    its objects there); found as a verify that printed its whole report after
    Ctrl-C. policyc's own SIGINT handler stops it wherever the signal lands."""
    script = tmp_path / "finaliser.py"
    script.write_text(
        "import os, signal, sys\n"
        "from sealnet.compiler import cli\n"
        "class Freed:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        for _ in range(10000):\n"
        "            pass\n"
        "def command(parser, argv):\n"
        "    Freed()\n"
        "    print('report', flush=True)\n"
        "    return 0\n"
        "cli.run = command\n"
        "sys.argv = [\"policyc\"]\nsys.exit(cli.main())\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 130 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr[-500:])


def test_ctrl_c_inside_one_solver_query(tmp_path: Path) -> None:
    """Z3 turns SIGINT into a cancelled query; the session turns that back into KeyboardInterrupt."""
    script = tmp_path / "hard.py"
    script.write_text(
        "import sys, z3\n"
        "from sealnet.compiler.solving import Budget, Session\n"
        "x, y = z3.BitVecs('x y', 64)\n"
        "s = Session(Budget(query_timeout=None, total=None))\n"
        "print('solving', flush=True)\n"
        "try:\n"
        "    s.model(x * y == 0xFFFFFFFFFFFFFFC5 * 3 + 12345678911, x > 1, y > 1,\n"
        "            z3.ULT(x, 2**40), z3.ULT(y, 2**40))\n"
        "    print('answered', flush=True)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n"
        "    sys.exit(130)\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "solving"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130 and out.strip() == "interrupted"
