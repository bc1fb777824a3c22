"""The policy's `cipher` setting: parsed, checked, formatted, defaulted, compiled in and recorded in the manifest."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealnet.compiler.build import build_object, find_clang
from sealnet.compiler.formatter import format_text
from sealnet.compiler.manifest import build_manifest
from sealnet.compiler.tables import build_tables
from sealnet.contracts import bundle as B
from sealnet.compiler.frontend import compile_text
from sealnet.contracts.manifest import CIPHER_SUITES, DEFAULT_CIPHER_SUITE

BASE = '''policy "p" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule ab: seal from a to b
'''


def check(text: str):  # type: ignore[no-untyped-def]
    return compile_text(text, "c.policy")


def test_chacha20_poly1305_is_the_default() -> None:
    policy, diagnostics = check(BASE)
    assert not diagnostics and policy is not None
    assert policy.cipher == DEFAULT_CIPHER_SUITE == "chacha20-poly1305"
    assert policy.cipher_span is None


@pytest.mark.parametrize("suite", CIPHER_SUITES)
def test_every_suite_can_be_chosen(suite: str) -> None:
    policy, diagnostics = check(BASE + f"cipher {suite}\n")
    assert not diagnostics and policy is not None
    assert policy.cipher == suite and policy.cipher_span is not None and policy.cipher_span.line == 5


def test_unknown_suite_is_an_error_at_its_name() -> None:
    policy, diagnostics = check(BASE + "cipher des-cbc\n")
    assert policy is None
    [d] = diagnostics
    assert d.code == "E119" and (d.span.line, d.span.column) == (5, 8) and "des-cbc" in d.message
    assert "chacha20-poly1305" in (d.hint or "")


def test_a_second_cipher_is_an_error() -> None:
    policy, diagnostics = check(BASE + "cipher aes-ccm\ncipher chacha20-poly1305\n")
    assert policy is None
    assert [d.code for d in diagnostics] == ["E120"] and diagnostics[0].span.line == 6


def test_cipher_statement_formats_and_reparses() -> None:
    text = BASE + "cipher   aes-ccm ;\n"
    formatted = format_text(text, "c.policy")
    assert "cipher aes-ccm\n" in formatted
    policy, diagnostics = check(formatted)
    assert not diagnostics and policy is not None and policy.cipher == "aes-ccm"


def test_cipher_is_a_keyword_not_a_name() -> None:
    _, diagnostics = check(BASE.replace("domain b", "domain cipher").replace("to b", "to cipher"))
    assert diagnostics and diagnostics[0].code in ("E001", "E117")


@pytest.mark.parametrize("cipher", CIPHER_SUITES)
def test_the_manifest_records_the_suite_compiled_in_and_a_bundle_claiming_another_is_refused(cipher: str) -> None:
    policy, _ = check(BASE + f"cipher {cipher}\n")
    assert policy is not None
    obj = build_object(policy)
    manifest = build_manifest(policy, obj, build_tables(policy), clang_version=find_clang().version_text)
    assert manifest["cipher_suite"] == cipher
    key = Ed25519PrivateKey.generate()
    assert B.load_bundle(B.pack(manifest, obj, key), key.public_key()).object_bytes == obj
    other = next(c for c in CIPHER_SUITES if c != cipher)
    with pytest.raises(B.BundleError, match="cipher_suite"):
        B.load_bundle(B.pack({**manifest, "cipher_suite": other}, obj, key), key.public_key())
