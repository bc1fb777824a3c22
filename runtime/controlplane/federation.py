"""Federation: fetch the pair secrets that a peer control plane keeps, over MAKE.

For a pair (A, B) whose keeper is the peer (keyschedule.keeper), this control
plane runs MAKE with the peer as a client of role "controlplane": each side
attests to the other (the peer must be a domain of the signed policy with a
control plane, on its declared TEE, with an accepted launch measurement,
running the same bundle), and the peer releases the secrets of the current
and next epoch wrapped to that session. Stored secrets never change, so a
retry or a second fetch is harmless. A peer that cannot be reached leaves
the pair without a secret for that epoch: nodes get no key for it and seal
traffic of that pair stays dropped (fail closed), never sent in clear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sealnet.runtime.control_client import ControlError, handshake
from sealnet.runtime.controlplane.admission import domains, with_control_plane
from sealnet.runtime.controlplane.broker import Broker
from sealnet.runtime.keyschedule import pair_domains
from sealnet.runtime.seal_wire import PAIR_KEY_LEN


def default_urls(manifest: dict) -> dict[str, str]:
    return {name: f"http://{d['control_plane']}" for name, d in domains(manifest).items() if d.get("control_plane")}


@dataclass
class Federation:
    broker: Broker
    urls: dict[str, str] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def peers_to_fetch(self) -> list[tuple[str, str]]:
        """(pair, keeper domain) for every pair another control plane keeps."""
        own = self.broker.config.domain
        out = []
        for pair in self.broker.pairs():
            k = self.broker.keeper_of(pair)
            if k is not None and k != own and k in with_control_plane(self.broker.config.manifest):
                out.append((pair, k))
        return out

    async def sync(self) -> None:
        epoch = self.broker.current_epoch()
        for pair, peer in self.peers_to_fetch():
            if all(self.broker.state.pair_secret(pair, e) is not None for e in (epoch, epoch + 1)):
                continue
            try:
                await self.fetch(pair, peer)
                self.last_error.pop(peer, None)
            except ControlError as exc:
                if self.last_error.get(peer) != str(exc):  # one audit row per new failure, not per retry
                    self.last_error[peer] = str(exc)
                    self.broker.state.audit("federate", role="controlplane", domain=peer, peer=self.url(peer),
                                            code=exc.code, reason=str(exc), detail={"pair": pair})

    def url(self, peer: str) -> str:
        return self.urls.get(peer) or default_urls(self.broker.config.manifest).get(peer, "")

    async def fetch(self, pair: str, peer: str) -> list[int]:
        c = self.broker.config
        session, payload = await handshake(
            self.url(peer), role="controlplane", domain=c.domain, manifest=c.manifest,
            bundle_measurement=c.bundle_measurement, attester=c.attester, verifier=c.verifier, expect_domain=peer)
        try:
            doc = json.loads(payload)
            if doc.get("pair") != pair or set(pair_domains(pair)) != {c.domain, peer}:
                raise ValueError(f"released pair {str(doc.get('pair'))[:64]!r}, expected {pair}")
            stored = []
            for epoch_text, secret_hex in doc["epochs"].items():
                epoch, secret = int(epoch_text), bytes.fromhex(secret_hex)
                if len(secret) != PAIR_KEY_LEN or not 0 <= epoch < 2**32:
                    raise ValueError("a released secret or epoch is out of range")
                self.broker.state.store_pair_secret(pair, epoch, secret, f"from {peer}")
                stored.append(epoch)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ControlError("malformed", f"federation release from {peer}: {exc}") from None
        c_state = self.broker.state
        c_state.audit("federate", role="controlplane", domain=peer, peer=self.url(peer), code="ok",
                      reason="pair secrets received from the keeper", detail={"pair": pair, "epochs": sorted(stored),
                                                                             "simulated": session.peer.simulated})
        return sorted(stored)
