"""A control-plane lab for tests and the benchmark: simulated platforms, a manifest, live brokers.

Real parts throughout: aiohttp servers on loopback sockets, SQLite files,
`cryptography` for every primitive. Only the hardware root is simulated.
"""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

from sealnet.runtime import control_client
from sealnet.runtime.attest.sim import SimPlatform, public_fingerprint
from sealnet.runtime.attest.verifier import VerifierConfig
from sealnet.runtime.controlplane import server
from sealnet.runtime.controlplane.broker import Broker, BrokerConfig
from sealnet.runtime.controlplane.federation import Federation
from sealnet.runtime.controlplane.state import State
from sealnet.runtime.keyschedule import Sealer

LAUNCH = hashlib.sha384(b"sealnet test guest image").digest()
LAUNCH_TEXT = "sha384:" + LAUNCH.hex()
BUNDLE = "sha384:" + hashlib.sha384(b"sealnet test bundle").hexdigest()


def manifest(control: dict[str, str | None] | None = None, tee: str = "sim",
             measurements: list[str] | None = None) -> dict[str, Any]:
    """Domains a, b, c with simulated TEEs; `control` names which have a control plane."""
    control = {"a": "127.0.0.1:1", "b": None, "c": None} if control is None else control
    return {"format": 1, "policy": {"name": "lab", "version": 1},
            "domains": [{"id": i + 1, "name": name, "tee": tee, "nodes": [f"198.18.{i + 1}.0/24"],
                         "measurements": measurements if measurements is not None else [LAUNCH_TEXT],
                         "control_plane": cp} for i, (name, cp) in enumerate(control.items())],
            "peers": [n for n, cp in control.items() if cp]}


@dataclass
class Platforms:
    cp: SimPlatform
    node: SimPlatform

    @classmethod
    def make(cls, launch: bytes = LAUNCH) -> Platforms:
        return cls(SimPlatform.generate(launch), SimPlatform.generate(launch))

    def verifier(self, *extra: SimPlatform) -> VerifierConfig:
        return VerifierConfig(sim_platforms=frozenset(public_fingerprint(p.key.public_key())
                                                      for p in (self.cp, self.node, *extra)))


@dataclass
class LiveCP:
    broker: Broker
    running: server.Running
    federation: Federation | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    @property
    def state(self) -> State:
        return self.broker.state

    def codes(self) -> list[str]:
        return [r.code for r in self.state.audit_rows() if r.event == "refuse"]

    def releases(self) -> int:
        return sum(1 for r in self.state.audit_rows() if r.event == "release")


def make_broker(db: str, domain: str, m: dict[str, Any], cp: SimPlatform, verifier: VerifierConfig, *,
                bundle: str = BUNDLE, period: int = 3600, clock: Any = None) -> Broker:
    state = State(db, domain=domain, sealer=Sealer(cp.sealing_key()))
    config = BrokerConfig(domain, m, bundle, cp.attest, verifier, period=period)
    if clock is not None:
        config.clock = clock
    return Broker(config, state)


@asynccontextmanager
async def live(broker: Broker, urls: dict[str, str] | None = None) -> AsyncIterator[LiveCP]:
    federation = Federation(broker, urls or {}) if urls is not None else None
    running = await server.start(broker, "127.0.0.1", 0, federation)
    try:
        yield LiveCP(broker, running, federation)
    finally:
        await running.stop()
        broker.state.close()


async def attest_node(cp: LiveCP, node: SimPlatform, m: dict[str, Any], verifier: VerifierConfig, *,
                      domain: str = "a", bundle: str = BUNDLE, http: Any = None,
                      runtime_log: Any = None) -> control_client.Release:
    return await control_client.attest(cp.url, domain=domain, manifest=m, bundle_measurement=bundle,
                                       attester=node.attest, verifier=verifier, http=http, runtime_log=runtime_log)


def run(coro: Any) -> Any:
    return asyncio.run(coro)
