"""The bundle manifest: what the node, the control plane and a reviewer need to know.

Canonical bytes are JSON with sorted keys, no whitespace and ASCII only, so
the same manifest always hashes the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from .ir import Policy

MANIFEST_FORMAT = 1
CIPHER_SUITES = ("aes-ccm",)  # what the data plane implements; chacha20-poly1305 is not built yet
AES_IMPLEMENTATIONS = ("aes-fixed-time", "aes-generic")  # constant time by default


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def map_layouts(object_bytes: bytes) -> list[dict[str, Any]]:
    """Map definitions as libbpf reads them from the object (no kernel needed)."""
    from runtime.libbpf import BpfObject

    with BpfObject.open_memory(object_bytes, "sealnet_manifest") as obj:
        return sorted(
            ({"name": m.name, "type": int(m.type), "key_size": m.key_size, "value_size": m.value_size,
              "max_entries": m.max_entries} for m in obj.maps()),
            key=lambda m: m["name"])


def program_sections(object_bytes: bytes) -> list[dict[str, str]]:
    from runtime.libbpf import BpfObject

    with BpfObject.open_memory(object_bytes, "sealnet_manifest") as obj:
        return sorted(({"name": p.name, "section": p.section} for p in obj.programs()), key=lambda p: p["name"])


def build_manifest(policy: Policy, object_bytes: bytes, tables: Any, *, clang_version: str,
                   cipher_suite: str = "aes-ccm", aes_implementation: str = "aes-fixed-time") -> dict[str, Any]:
    tables_json = dataclasses.asdict(tables)
    return {
        "format": MANIFEST_FORMAT,
        "policy": {"name": policy.name, "version": policy.version},
        "domains": [
            {"id": d.id, "name": d.name, "tee": d.tee.value, "nodes": [str(n) for n in d.prefixes],
             "measurements": list(d.measurements), "control_plane": d.control_plane}
            for d in policy.domains
        ],
        "peers": list(policy.peers),
        "cipher_suite": cipher_suite,
        "aes_implementation": aes_implementation,
        "toolchain": {"policyc": "0.1.0", "clang": clang_version},
        "programs": program_sections(object_bytes),
        "maps": map_layouts(object_bytes),
        "object_sha384": hashlib.sha384(object_bytes).hexdigest(),
        "tables_sha384": hashlib.sha384(canonical(tables_json)).hexdigest(),
        "tables": tables_json,
    }
