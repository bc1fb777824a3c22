"""The bundle manifest's format: what the node, the control plane and a reviewer read.

Built from a checked policy by `sealnet.compiler.manifest`.

Canonical bytes are JSON with sorted keys, no whitespace and ASCII only, so
the same manifest always hashes the same.
"""

from __future__ import annotations

import json
from typing import Any

from sealnet.contracts.abi import AES_DRIVERS
from sealnet.contracts.abi import SealSuite
from sealnet.contracts.libbpf import BpfObject

MANIFEST_FORMAT = 1
# The AEAD suites the data plane implements, by their names in a policy's `cipher`, and the
# suite byte of their seal header (docs/wire-format.md).
SUITE_BY_CIPHER = {"chacha20-poly1305": SealSuite.CHACHA20_POLY1305, "aes-ccm": SealSuite.AES_128_CCM}
CIPHER_SUITES = tuple(SUITE_BY_CIPHER)
DEFAULT_CIPHER_SUITE = "chacha20-poly1305"  # no kfunc, constant time, and the fast one without AES-NI
AES_IMPLEMENTATIONS = AES_DRIVERS  # the manifest's aes_implementation: the data plane's AES drivers


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def map_layouts(object_bytes: bytes) -> list[dict[str, Any]]:
    """Map definitions as libbpf reads them from the object (no kernel needed)."""
    with BpfObject.open_memory(object_bytes, "sealnet_manifest") as obj:
        return sorted(
            ({"name": m.name, "type": int(m.type), "key_size": m.key_size, "value_size": m.value_size,
              "max_entries": m.max_entries} for m in obj.maps()),
            key=lambda m: m["name"])


def program_sections(object_bytes: bytes) -> list[dict[str, str]]:
    with BpfObject.open_memory(object_bytes, "sealnet_manifest") as obj:
        return sorted(({"name": p.name, "section": p.section} for p in obj.programs()), key=lambda p: p["name"])
