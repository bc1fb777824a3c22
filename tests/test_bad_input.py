"""Whatever a user hands the tools, the answer is a diagnostic or one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def policyc(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sealnet.compiler.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def assert_clean(proc: subprocess.CompletedProcess[str], codes: tuple[int, ...] = (1,)) -> None:
    assert proc.returncode in codes, (proc.returncode, proc.stdout[-500:], proc.stderr[-500:])
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout


CASES = {
    "empty.policy": b"",
    "binary.policy": bytes(range(256)) * 4,
    "nul.policy": b'policy "p" version 1\n\0\0\0rule\0',
    "not-utf8.policy": b'policy "caf\xe9" version 1\n',
    "deep-negation.policy": b'policy "p" version 1\ndomain a { tee tdx; nodes 198.18.1.0/24 }\n'
                            b"rule r: deny from " + b"!" * 100_000 + b"a to a\n",
    "deep-braces.policy": b'policy "p" version 1\nrule r: deny from ' + b"{" * 50_000 + b"\n",
    "unknown-keywords.policy": b'policy "p" version 1\nfirewall x { drop everything }\nrule r: permit from a to b\n',
    "unterminated.policy": b'policy "p\ndomain a { measurement "sha384:\n',
    "huge-numbers.policy": b'policy "p" version 99999999999999999999999\nrule r: deny tcp from any to any port 99999999999999\n',
}


# Files that are not UTF-8 cannot be read as policies: exit 2 (unreadable input), not 1.
NOT_UTF8 = {"binary.policy", "not-utf8.policy"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lint_and_fmt_on_bad_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(CASES[name])
    for args in (["fmt", "--check", str(path)], ["explain", str(path)], ["verify", str(path)],
                 ["lint", "--format", "json", str(path)]):
        assert_clean(policyc(*args), codes=(0, 1, 2) if name in NOT_UTF8 else (0, 1))
    # an even number of `!` is no negation at all: that file is a valid policy
    expected = (0,) if name == "deep-negation.policy" else (2,) if name in NOT_UTF8 else (1,)
    assert_clean(policyc("lint", str(path)), codes=expected)
    assert path.read_bytes() == CASES[name]  # nothing was rewritten


def test_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "huge.policy"
    # long comments make a 5 MB file of a few thousand statements
    line = b"rule r%d: deny tcp from 198.18.1.0/24 to 198.18.2.0/24 port %d  # " + b"x" * 1000 + b"\n"
    body = b'policy "huge" version 1\n' + b"".join(line % (i, i % 65536) for i in range(5_000))
    path.write_bytes(body)
    assert len(body) > 5_000_000
    proc = policyc("lint", "--no-verify", "--format", "json", str(path), timeout=300)
    assert_clean(proc, codes=(0, 1))


def test_paths_that_are_not_policy_files(tmp_path: Path) -> None:
    for args in (["lint", str(tmp_path)], ["lint", str(tmp_path / "missing.policy")],
                 ["explain", str(tmp_path)], ["fmt", str(tmp_path)], ["diff", str(tmp_path), str(tmp_path)],
                 ["inspect", str(tmp_path)], ["inspect", str(tmp_path / "missing.bundle")],
                 ["compile", str(tmp_path / "x.policy"), "-o", str(tmp_path / "o"), "--sign-key", str(tmp_path)]):
        proc = policyc(*args)
        assert_clean(proc, codes=(1, 2))
        assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr


def test_usage_errors_exit_2() -> None:
    for args in ([], ["lint"], ["frobnicate"], ["lint", "--format", "xml", "x"], ["compile", "x"]):
        assert_clean(policyc(*args), codes=(2,))


def test_garbage_bundle_and_key(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bundle"
    junk.write_bytes(b"\x00" * 100)
    key = tmp_path / "junk.key"
    key.write_text("not a key\n")
    proc = policyc("inspect", str(junk), "--trust", str(key))
    assert_clean(proc)
    assert proc.stderr.startswith("policyc: error:") and "not a PEM public key" in proc.stderr
    proc = policyc("inspect", str(junk))
    assert_clean(proc)
    assert "refused: magic" in proc.stderr
