"""Key files, per-direction key derivation and the sender ledger (no kernel needed)."""

from __future__ import annotations

import json
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sealnet.runtime import seal_keys, seal_wire

KEY = "11" * 32
NEXT = "22" * 32


def doc(**changes: object) -> str:
    base: dict[str, object] = {"sealnet_keys": 1, "sender": 7,
                               "pairs": [{"domains": ["a", "b"], "current": {"epoch": 4, "key": KEY},
                                          "next": {"epoch": 5, "key": NEXT}}]}
    base.update(changes)
    return json.dumps(base)


def test_a_good_file_derives_distinct_keys_per_direction_and_epoch() -> None:
    keys = seal_keys.parse_key_file(doc())
    derived = seal_keys.direction_keys(keys, {"a": 1, "b": 2})
    assert {(d.src, d.dst, d.epoch, d.current) for d in derived} == {
        ("a", "b", 4, True), ("b", "a", 4, True), ("a", "b", 5, False), ("b", "a", 5, False)}
    assert len({bytes(d.key) for d in derived}) == 4
    ab = next(d for d in derived if (d.src, d.dst, d.epoch) == ("a", "b", 4))
    # The derivation as docs/wire-format.md writes it, spelled out independently.
    expected = HKDF(algorithm=hashes.SHA384(), length=16, salt=b"sealnet/v1",
                    info=b"sealnet/v1 aes-128-ccm a\0b\0\x04").derive(bytes.fromhex(KEY))
    assert bytes(ab.key) == expected == seal_wire.direction_key(bytes.fromhex(KEY), "a", "b", 4)
    keys.wipe()
    assert not any(keys.pairs[0].current[1])


@pytest.mark.parametrize("text, field", [
    ("{not json", "1:2: not JSON"),
    ("[]", "top level"),
    (doc(sealnet_keys=2), "sealnet_keys"),
    (doc(sender=0), "sender"),
    (doc(sender=2**32), "sender"),
    (doc(sender=True), "sender"),
    (doc(pairs={}), "pairs"),
    (doc(extra=1), "extra: unknown field"),
    (doc(pairs=[{"domains": ["a", "a"], "current": {"epoch": 1, "key": KEY}}]), "pairs[0].domains"),
    (doc(pairs=[{"domains": ["a"], "current": {"epoch": 1, "key": KEY}}]), "pairs[0].domains"),
    (doc(pairs=[{"domains": ["a", "b"], "current": {"epoch": 1, "key": KEY}},
                {"domains": ["b", "a"], "current": {"epoch": 1, "key": KEY}}]), "pairs[1].domains"),
    (doc(pairs=[{"domains": ["a", "b"], "current": {"epoch": 1, "key": "zz" * 32}}]), "pairs[0].current.key"),
    (doc(pairs=[{"domains": ["a", "b"], "current": {"epoch": 1, "key": "11" * 16}}]), "pairs[0].current.key"),
    (doc(pairs=[{"domains": ["a", "b"], "current": {"epoch": 1, "key": "00" * 32}}]), "pairs[0].current.key"),
    (doc(pairs=[{"domains": ["a", "b"], "current": {"epoch": -1, "key": KEY}}]), "pairs[0].current.epoch"),
    (doc(pairs=[{"domains": ["a", "b"], "current": {"epoch": 1, "key": KEY},
                 "next": {"epoch": 3, "key": NEXT}}]), "pairs[0].next.epoch"),
    (doc(pairs=[{"domains": ["a", "b"]}]), "pairs[0]"),
])
def test_bad_files_name_the_field(text: str, field: str) -> None:
    with pytest.raises(seal_keys.KeyFileError) as err:
        seal_keys.parse_key_file(text, "lab.keys")
    assert str(err.value).startswith("lab.keys:") and field in str(err.value)


def test_a_domain_missing_from_the_bundle_is_named() -> None:
    with pytest.raises(seal_keys.KeyFileError, match=r"pairs\[0\].domains: domain 'b' is not in the bundle"):
        seal_keys.direction_keys(seal_keys.parse_key_file(doc()), {"a": 1}, "lab.keys")


def test_unreadable_files(tmp_path) -> None:
    with pytest.raises(seal_keys.KeyFileError, match="cannot read"):
        seal_keys.load_key_file(str(tmp_path / "missing.keys"))
    binary = tmp_path / "binary.keys"
    binary.write_bytes(b"\xff\xfe\x00")
    binary.chmod(0o600)
    with pytest.raises(seal_keys.KeyFileError, match="not UTF-8"):
        seal_keys.load_key_file(str(binary))


def test_a_key_file_may_omit_the_sender_and_nested_garbage_is_one_error() -> None:
    text = json.dumps({"sealnet_keys": 1, "pairs": [{"domains": ["a", "b"], "current": {"epoch": 4, "key": KEY}}]})
    assert seal_keys.parse_key_file(text).sender is None
    with pytest.raises(seal_keys.KeyFileError, match="lab.keys: not a key file: nested too deeply"):
        seal_keys.parse_key_file("[" * 100_000 + "]" * 100_000, "lab.keys")


def test_key_files_readable_by_others_are_refused_unless_allowed(tmp_path) -> None:
    path = tmp_path / "lab.keys"
    path.write_text(doc())
    path.chmod(0o644)
    with pytest.raises(seal_keys.KeyFileError, match=r"lab.keys: refused: mode 0644 .*--allow-loose-key-permissions"):
        seal_keys.load_key_file(str(path))
    assert seal_keys.load_key_file(str(path), allow_loose_permissions=True).sender == 7
    path.chmod(0o600)
    assert seal_keys.load_key_file(str(path)).sender == 7


def test_key_reads_are_bounded_and_never_block(tmp_path) -> None:
    fifo = tmp_path / "fifo.keys"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(seal_keys.KeyFileError, match="not a regular file"):
        seal_keys.load_key_file(str(fifo))  # would hang on a blocking open
    with pytest.raises(seal_keys.KeyFileError, match="not a regular file"):
        seal_keys.load_key_file("/dev/zero", allow_loose_permissions=True)
