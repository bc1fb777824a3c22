"""The nodes one `sealnet node run` serves: `--iface/--netns` pairs, or a node-list file.

A node-list file is JSON (docs/make.md, "One agent, several nodes"):

    {"nodes": [{"iface": "eth0", "netns": "lab-n1"},
               {"iface": "eth0", "netns": "lab-n2", "runtime_log": "/run/x/lab-n2.json"}]}

`netns` is optional (this namespace); `runtime_log` (the node's own runtime
measurement log: a simulated TEE of its own) and `bundle` (a bundle other
than `--bundle` for this node) are optional. Bad input is one line naming the
file and the field; nothing is started.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sealnet.contracts.errors import UserError
from sealnet.runtime.node_files import NodeFileError, read_bounded

MAX_NODE_LIST_BYTES = 16 << 20  # 100,000 nodes of about 160 bytes each
FIELDS = ("iface", "netns", "runtime_log", "bundle")


@dataclass(frozen=True)
class NodeSpec:
    iface: str
    netns: str | None = None
    runtime_log: str | None = None
    bundle: str | None = None


def from_arguments(ifaces: list[str], netnses: list[str]) -> list[NodeSpec]:
    """`--iface A --netns X --iface B --netns Y`: the i-th netns goes with the i-th interface; one
    `--netns` alone applies to every interface; none: this namespace."""
    if len(netnses) not in (0, 1, len(ifaces)):
        raise UserError(f"--netns: given {len(netnses)} times for {len(ifaces)} --iface; give one per --iface, "
                        f"one for all, or none")
    if len(netnses) == len(ifaces):
        pairs = list(zip(ifaces, netnses))
    else:
        pairs = [(i, netnses[0] if netnses else None) for i in ifaces]
    return _unique([NodeSpec(iface, ns) for iface, ns in pairs], "--iface")


def read(path: str) -> list[NodeSpec]:
    try:
        raw = read_bounded(path, MAX_NODE_LIST_BYTES, "node list")
    except NodeFileError as exc:
        raise UserError(str(exc)) from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or set(doc) != {"nodes"} or not isinstance(doc["nodes"], list) or not doc["nodes"]:
        raise UserError(f"{path}: expected {{\"nodes\": [...]}} with at least one node")
    specs = []
    for i, entry in enumerate(doc["nodes"]):
        where = f"{path}: nodes[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object")
        unknown = set(entry) - set(FIELDS)
        if unknown:
            raise UserError(f"{where}.{sorted(unknown)[0]}: unknown field (known: {', '.join(FIELDS)})")
        for name, value in entry.items():
            if not isinstance(value, str) or not value:
                raise UserError(f"{where}.{name}: expected a non-empty string")
        if "iface" not in entry:
            raise UserError(f"{where}.iface: required")
        specs.append(NodeSpec(entry["iface"], entry.get("netns"), entry.get("runtime_log"), entry.get("bundle")))
    return _unique(specs, path)


def _unique(specs: list[NodeSpec], where: str) -> list[NodeSpec]:
    seen = set()
    for s in specs:
        if (s.iface, s.netns) in seen:
            raise UserError(f"{where}: {s.iface}" + (f" in netns {s.netns}" if s.netns else "") + " given twice")
        seen.add((s.iface, s.netns))
    return specs
