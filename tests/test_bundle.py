"""Bundles and measurements: reproducible, tamper-evident, refused with one-line reasons."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealnet.contracts import abi
from sealnet.contracts import bundle as B
from sealnet.compiler.build import build_object, find_clang
from sealnet.compiler.cli import main
from sealnet.compiler.codegen import render
from sealnet.compiler.manifest import build_manifest
from sealnet.contracts.manifest import canonical
from sealnet.contracts.measure import measure
from sealnet.compiler.tables import build_tables
from policies import compile_ok

ROOT = Path(__file__).resolve().parent.parent
GENOMICS = (ROOT / "examples" / "genomics.policy").read_text()


@pytest.fixture(scope="module")
def built():
    policy = compile_ok(GENOMICS)
    obj = build_object(policy)
    manifest = build_manifest(policy, obj, build_tables(policy), clang_version=find_clang().version_text)
    key = Ed25519PrivateKey.generate()
    return policy, obj, manifest, key, B.pack(manifest, obj, key)


def test_round_trip_and_measurement(built) -> None:
    _, obj, manifest, key, data = built
    verified = B.load_bundle(data, key.public_key())
    assert verified.object_bytes == obj
    assert verified.measurement == measure(obj, canonical(manifest))
    assert verified.measurement.startswith("sha384:") and len(verified.measurement) == 7 + 96


def test_measurement_is_reproducible_and_sensitive(built) -> None:
    policy, obj, manifest, _, _ = built
    again = build_object(compile_ok(GENOMICS))  # another temp directory
    assert again == obj
    base = measure(obj, canonical(manifest))
    assert measure(again, canonical(manifest)) == base
    # the manifest, the tables and the code each change it
    assert measure(obj, canonical({**manifest, "cipher_suite": "aes-ccm"})) != base
    changed = compile_ok(GENOMICS.replace("port 7001", "port 7003"))
    assert measure(build_object(changed), canonical(manifest)) != base


def test_debug_info_and_paths_are_not_measured(tmp_path) -> None:
    source = render(compile_ok(GENOMICS))
    include = str(ROOT / "bpf_templates" / "include")
    objects = []
    for d in ("one", "two-longer-directory"):
        work = tmp_path / d
        work.mkdir()
        (work / "x.c").write_text(source)
        clang = find_clang()
        subprocess.run([clang.path, "-target", "bpf", "-O2", "-g", f"-I{include}",
                        "-I", clang.uapi_include_dir(), "-c", str(work / "x.c"), "-o", str(work / "x.o")],
                       check=True, capture_output=True, timeout=120)
        objects.append((work / "x.o").read_bytes())
    assert objects[0] != objects[1]  # the debug info records the paths
    assert measure(objects[0], b"{}") == measure(objects[1], b"{}")


def test_every_truncation_is_refused(built) -> None:
    *_, key, data = built
    for n in list(range(0, 600)) + list(range(600, len(data), 97)) + [len(data) - 1]:
        with pytest.raises(B.BundleError):
            B.load_bundle(data[:n], key.public_key())


def test_flipped_bits_are_refused(built) -> None:
    *_, key, data = built
    rnd = random.Random(5)
    positions = list(range(0, 8 * 64)) + [rnd.randrange(8 * len(data)) for _ in range(1500)]
    for bit in positions:
        mutated = bytearray(data)
        mutated[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(B.BundleError):
            B.load_bundle(bytes(mutated), key.public_key())


def test_reasons_name_the_field(built) -> None:
    _, obj, manifest, key, data = built
    other = Ed25519PrivateKey.generate()
    cases = {
        "signature: does not verify": (data, other),
        "truncated": (data[:-64], key),
        "magic": (b"NOTABUND" + data[8:], key),
        "trailing bytes": (data + b"\0", key),
    }
    header = bytearray(data[:B.HEADER.size])
    struct.pack_into(">H", header, 8, B.FORMAT_VERSION + 1)
    body = bytes(header) + data[B.HEADER.size:-64]
    cases["newer than this sealnet"] = (body + key.sign(B.SIGNING_CONTEXT + body), key)
    cases["manifest.object_sha384"] = (B.pack({**manifest, "object_sha384": "0" * 96}, obj, key), key)
    cases["manifest.maps"] = (B.pack({**manifest, "maps": manifest["maps"][:-1]}, obj, key), key)
    tables = json.loads(canonical(manifest["tables"]))
    tables["rule_count"] += 1
    cases["manifest.tables_sha384"] = (B.pack({**manifest, "tables": tables}, obj, key), key)
    for reason, (blob, signer) in cases.items():
        with pytest.raises(B.BundleError, match=reason.split(":")[0]) as exc:
            B.load_bundle(blob, signer.public_key())
        assert reason in str(exc.value) and "\n" not in str(exc.value)


def test_cli_keygen_compile_inspect(tmp_path, capsys) -> None:
    key = tmp_path / "auth.key"
    out = tmp_path / "g.bundle"
    assert main(["keygen", str(key)]) == 0
    assert oct(os.stat(key).st_mode & 0o777) == "0o600"
    assert main(["keygen", str(key)]) == 1  # never overwrites a key
    capsys.readouterr()
    assert main(["compile", str(ROOT / "examples" / "genomics.policy"), "-o", str(out),
                 "--sign-key", str(key), "--format", "json"]) == 0
    compiled = json.loads(capsys.readouterr().out)
    assert main(["inspect", str(out), "--trust", f"{key}.pub", "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["measurement"] == compiled["measurement"] and info["signature"] == "valid"
    assert [p["name"] for p in info["programs"]] == sorted([*abi.SEAL_SYSCALL_PROGRAMS, *abi.GUARD_PROGRAMS, *abi.PROGRAMS.values()])
    other = tmp_path / "other.key"
    main(["keygen", str(other)])
    assert main(["inspect", str(out), "--trust", f"{other}.pub"]) == 1
    assert "signature    invalid" in capsys.readouterr().out
    out.write_bytes(out.read_bytes()[:100])
    assert main(["inspect", str(out)]) == 1
    assert "refused: truncated" in capsys.readouterr().err


def test_compile_refuses_a_policy_with_errors(tmp_path, capsys) -> None:
    key = tmp_path / "k"
    main(["keygen", str(key)])
    bad = tmp_path / "bad.policy"
    bad.write_text(GENOMICS + "assert reachable udp from public to lab\n")
    out = tmp_path / "bad.bundle"
    assert main(["compile", str(bad), "-o", str(out), "--sign-key", str(key)]) == 1
    assert not out.exists()
    assert "verification failed" in capsys.readouterr().err


@pytest.mark.kernel
def test_compile_validate_runs_the_object_in_the_kernel(tmp_path, capsys) -> None:
    key = tmp_path / "k"
    main(["keygen", str(key)])
    capsys.readouterr()
    out = tmp_path / "f.bundle"
    assert main(["compile", str(ROOT / "examples" / "federation.policy"), "-o", str(out),
                 "--sign-key", str(key), "--validate", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)["validation"]
    assert report["ok"] and report["mismatches"] == [] and report["packets"] > 100 and out.exists()
