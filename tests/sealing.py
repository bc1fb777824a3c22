"""Shared pieces of the sealing tests: a policy, packet builders, a loaded data plane with keys."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from sealnet.compiler.build import build_object
from sealnet.compiler.codegen import VERDICTS
from policies import compile_ok
from sealnet.runtime import node, seal_keys, seal_wire
from sealnet.runtime.packets import ETH
from sealnet.contracts.libbpf import BpfObject

SEAL_POLICY = '''policy "sealtest" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
domain c { tee tdx; nodes 198.18.0.3/32 }
rule ab: seal from a to b
rule ba: seal from b to a
rule ac: seal from a to c
rule ca: seal from c to a
rule cb: allow plaintext udp from c to b port 9
default deny
'''
DOMAIN_IDS = {"a": 1, "b": 2, "c": 3}
ADDR = {"a": "198.18.0.1", "b": "198.18.0.2", "c": "198.18.0.3"}
TC_ACT_OK, TC_ACT_SHOT = 0, 2
_senders = itertools.count(int.from_bytes(os.urandom(2), "big") << 8 | 1)

_objects: dict[str, bytes] = {}


def sealed_object(aes_implementation: str = "aes-fixed-time") -> bytes:
    """The test policy's data plane, built once per process and driver."""
    if aes_implementation not in _objects:
        _objects[aes_implementation] = build_object(compile_ok(SEAL_POLICY), aes_implementation=aes_implementation)
    return _objects[aes_implementation]


def fresh_sender() -> int:
    return next(_senders)


def pair_key() -> bytes:
    return os.urandom(seal_wire.PAIR_KEY_LEN)


key_file_text = seal_keys.format_key_file


@dataclass
class SealedDatapath:
    """A loaded sealing data plane (not attached), driven with BPF_PROG_TEST_RUN."""

    obj: BpfObject
    state_dir: str
    pair_keys: dict[tuple[str, str], dict[str, tuple[int, bytes]]] = field(default_factory=dict)
    sender: int = 0

    @classmethod
    def load(cls, state_dir: str, aes_implementation: str = "aes-fixed-time") -> SealedDatapath:
        obj = BpfObject.open_memory(sealed_object(aes_implementation), "sealtest")
        obj.load()
        return cls(obj, state_dir)

    def handles(self) -> seal_keys.SealHandles:
        handles = node.seal_handles(self.obj)
        assert handles is not None
        return handles

    def install(self, pairs: dict[tuple[str, str], dict[str, tuple[int, bytes]]], sender: int | None = None) -> None:
        self.sender = sender if sender is not None else fresh_sender()
        self.pair_keys = pairs
        keys = seal_keys.parse_key_file(key_file_text(self.sender, pairs))
        seal_keys.install(self.handles(), keys, DOMAIN_IDS,
                          program_id=self.obj.program("sealnet_egress").info().id, state_dir=self.state_dir)

    def direction_key(self, src: str, dst: str, which: str = "current") -> bytes:
        names = (src, dst) if (src, dst) in self.pair_keys else (dst, src)
        epoch, key = self.pair_keys[names][which]
        return seal_wire.direction_key(key, src, dst, epoch)

    def egress(self, packet: bytes) -> tuple[int, bytes]:
        r = self.obj.program("sealnet_egress").test_run(ETH + packet, data_size_out=4096)
        return r.retval, r.data_out[len(ETH):]

    def ingress(self, packet: bytes) -> tuple[int, bytes]:
        r = self.obj.program("sealnet_ingress").test_run(ETH + packet, data_size_out=4096)
        return r.retval, r.data_out[len(ETH):]

    def verdicts(self, direction: str) -> dict[str, int]:
        base = (0 if direction == "egress" else 1) * len(VERDICTS)
        m = self.obj.map("verdict_hits")
        return {v: m.sum_percpu_u64((base + i).to_bytes(4, "little")) for i, v in enumerate(VERDICTS)}

    def close(self) -> None:
        self.obj.close()


def counted(dp: SealedDatapath, direction: str, run) -> tuple[object, set[str]]:  # type: ignore[no-untyped-def]
    """Run `run()`; its result and the verdict counters it moved."""
    before = dp.verdicts(direction)
    result = run()
    after = dp.verdicts(direction)
    return result, {v for v in after if after[v] != before[v]}
