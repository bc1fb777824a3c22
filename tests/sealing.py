"""Shared pieces of the sealing tests: a policy, packet builders, a loaded data plane with keys."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field

from sealnet.compiler.build import build_object
from policies import compile_ok
from sealnet.runtime import node, seal_keys, seal_wire
from packets import ETH
from sealnet.contracts import abi
from sealnet.contracts.libbpf import BpfObject
from sealnet.contracts.manifest import DEFAULT_CIPHER_SUITE

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
TC_ACT_OK, TC_ACT_SHOT = abi.TC_ACT_OK, abi.TC_ACT_SHOT
_senders = itertools.count(int.from_bytes(os.urandom(2), "big") << 8 | 1)

_objects: dict[tuple[str, str], bytes] = {}


def sealed_object(aes_implementation: str = "aes-fixed-time", cipher: str = DEFAULT_CIPHER_SUITE) -> bytes:
    """The test policy's data plane with `cipher SUITE`, built once per process, suite and driver."""
    if (cipher, aes_implementation) not in _objects:
        policy = compile_ok(SEAL_POLICY + f"cipher {cipher}\n")
        _objects[(cipher, aes_implementation)] = build_object(policy, aes_implementation=aes_implementation)
    return _objects[(cipher, aes_implementation)]


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
    cipher: str = DEFAULT_CIPHER_SUITE

    @classmethod
    def load(cls, state_dir: str, aes_implementation: str = "aes-fixed-time",
             cipher: str = DEFAULT_CIPHER_SUITE) -> SealedDatapath:
        obj = BpfObject.open_memory(sealed_object(aes_implementation, cipher), "sealtest")
        obj.load()
        return cls(obj, state_dir, cipher=cipher)

    @property
    def suite(self) -> seal_wire.Suite:
        return seal_wire.SUITE_BY_NAME[self.cipher]

    def header(self, epoch: int, sender: int, cpu: int, seq: int) -> seal_wire.SealHeader:
        """A seal header of this data plane's suite."""
        return seal_wire.SealHeader(epoch=epoch, sender=sender, cpu=cpu, seq=seq, suite=self.suite.id)

    def handles(self) -> seal_keys.SealHandles:
        handles = node.seal_handles(self.obj)
        assert handles is not None
        return handles

    def install(self, pairs: dict[tuple[str, str], dict[str, tuple[int, bytes]]], sender: int | None = None) -> None:
        self.sender = sender if sender is not None else fresh_sender()
        self.pair_keys = pairs
        keys = seal_keys.parse_key_file(key_file_text(self.sender, pairs))
        seal_keys.install(self.handles(), keys, DOMAIN_IDS, sender=self.sender, ledger_dir=self.state_dir)

    def direction_key(self, src: str, dst: str, which: str = "current") -> bytes:
        names = (src, dst) if (src, dst) in self.pair_keys else (dst, src)
        epoch, key = self.pair_keys[names][which]
        return seal_wire.direction_key(key, src, dst, epoch, self.suite)

    def egress(self, packet: bytes) -> tuple[int, bytes]:
        r = self.obj.program(abi.EGRESS_PROGRAM).test_run(ETH + packet, data_size_out=4096)
        return r.retval, r.data_out[len(ETH):]

    def ingress(self, packet: bytes) -> tuple[int, bytes]:
        r = self.obj.program(abi.INGRESS_PROGRAM).test_run(ETH + packet, data_size_out=4096)
        return r.retval, r.data_out[len(ETH):]

    def verdicts(self, direction: str) -> dict[str, int]:
        d = abi.Direction[direction.upper()]
        m = self.obj.map(abi.VERDICT_HITS_MAP)
        return {v.label: m.sum_percpu_u64(abi.verdict_slot(d, v).to_bytes(4, "little")) for v in abi.Verdict}

    def close(self) -> None:
        self.obj.close()


def counted(dp: SealedDatapath, direction: str, run) -> tuple[object, set[str]]:  # type: ignore[no-untyped-def]
    """Run `run()`; its result and the verdict counters it moved."""
    before = dp.verdicts(direction)
    result = run()
    after = dp.verdicts(direction)
    return result, {v for v in after if after[v] != before[v]}
