"""Build a bundle manifest (format: `sealnet.contracts.manifest`) from a checked policy."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from sealnet.compiler.ir import Policy
from sealnet.contracts.manifest import MANIFEST_FORMAT, canonical, map_layouts, program_sections


def build_manifest(policy: Policy, object_bytes: bytes, tables: Any, *, clang_version: str,
                   aes_implementation: str = "aes-fixed-time") -> dict[str, Any]:
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
        # Each counter slot's rule and source line, so a node can trace any drop to the line
        # that caused it (rule index N is the default).
        "rules": [{"index": r.index, "name": r.name, "action": r.action.value, "line": r.span.line}
                  for r in policy.rules]
        + [{"index": len(policy.rules), "name": "default", "action": policy.default.value,
            "line": policy.default_span.line if policy.default_span else 0}],
        "cipher_suite": policy.cipher,  # the policy's `cipher`, compiled into the object
        "aes_implementation": aes_implementation,
        "toolchain": {"policyc": "0.1.0", "clang": clang_version},
        "programs": program_sections(object_bytes),
        "maps": map_layouts(object_bytes),
        "object_sha384": hashlib.sha384(object_bytes).hexdigest(),
        "tables_sha384": hashlib.sha384(canonical(tables_json)).hexdigest(),
        "tables": tables_json,
    }
