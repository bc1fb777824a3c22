"""The key broker: MAKE with nodes and peer control planes, then release or refuse (and audit either).

Transport-free (controlplane/server.py carries it over HTTP). Handshake state
between ServerHello and ClientFinish lives in memory only, for at most
HANDSHAKE_TTL seconds, and is consumed by the first ClientFinish: nothing a
restart loses matters (the node runs MAKE again), and everything that must
survive (sender ids, epoch secrets, the audit log) is in the database before
a key leaves.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from sealnet.runtime.attest.evidence import Evidence, LogEntry, BUNDLE_REGISTER, Verified
from sealnet.runtime.attest.verifier import VerifierConfig, verify
from sealnet.runtime.controlplane.admission import admit, domains, with_control_plane
from sealnet.runtime.controlplane.state import State, StateError
from sealnet.runtime.keyschedule import DEFAULT_PERIOD, epoch_at, keeper, new_pair_secret, pair_domains, pair_name
from sealnet.runtime.make import MakeError, Pending, Server, Session
from sealnet.runtime.seal_keys import KEY_FILE_FORMAT

HANDSHAKE_TTL = 30.0
MAX_PENDING = 4096
RELEASE_FORMAT = 1

Attester = Callable[[bytes, tuple[LogEntry, ...]], Evidence]


class Refused(Exception):
    """A request refused: `code` (audit code), `status` (HTTP), a one-line reason."""

    def __init__(self, code: str, reason: str, status: int = 403) -> None:
        super().__init__(reason)
        self.code, self.reason, self.status = code, reason, status

    def to_json(self) -> dict[str, str]:
        return {"type": "refused", "code": self.code, "reason": self.reason}


@dataclass
class BrokerConfig:
    domain: str
    manifest: dict[str, Any]
    bundle_measurement: str
    attester: Attester
    verifier: VerifierConfig
    period: int = DEFAULT_PERIOD
    clock: Callable[[], float] = time.time


class GroupCommit:
    """Durable writes at the speed of many: every record waiting while one commit runs goes into the next.

    The commit (and its fsync) runs in a worker thread, so handshakes keep going on the event loop and
    the next batch fills meanwhile. Each caller resumes only after its batch is on disk (a release gets
    its sender id then, a refusal is answered then).
    """

    def __init__(self, write: Callable[[list[dict[str, Any]]], list[Any]]) -> None:
        self.write = write
        self.queue: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, record: dict[str, Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.queue.append((record, future))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self.queue:
            batch, self.queue = self.queue, []
            try:
                results = await loop.run_in_executor(None, self.write, [r for r, _ in batch])
            except Exception as exc:  # nothing of this batch was recorded: none of it is released
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)


@dataclass
class Broker:
    config: BrokerConfig
    state: State
    pending: dict[bytes, Pending] = field(default_factory=dict)
    nonces: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.commits = GroupCommit(self.state.record_releases)
        self.audits = GroupCommit(self.state.record_audits)
        c = self.config
        if c.domain not in domains(c.manifest):
            raise ValueError(f"domain {c.domain!r} is not in the bundle's policy")
        self.log = (LogEntry(BUNDLE_REGISTER, "bundle", c.bundle_measurement),)
        self.server = Server(domain=c.domain, attester=c.attester, runtime_log=self.log)
        policy = c.manifest.get("policy", {})
        self.state.add_bundle(c.bundle_measurement, f"{policy.get('name')} version {policy.get('version')}")

    # -------------------------------------------------------------- epochs

    def pairs(self) -> list[str]:
        """Every pair with this domain whose other side is in the policy."""
        return sorted(pair_name(self.config.domain, d) for d in domains(self.config.manifest) if d != self.config.domain)

    def keeper_of(self, pair: str) -> str | None:
        a, b = pair_domains(pair)
        return keeper(a, b, with_control_plane(self.config.manifest) | {self.config.domain})

    def current_epoch(self) -> int:
        return self.state.advance_epoch(epoch_at(self.config.clock(), self.config.period))

    def ensure_epochs(self) -> int:
        """Draw the secrets this control plane keeps for the current and next epoch; returns the current."""
        epoch = self.current_epoch()
        for pair in self.pairs():
            if self.keeper_of(pair) == self.config.domain:
                for e in (epoch, epoch + 1):
                    if self.state.pair_secret(pair, e) is None:
                        self.state.store_pair_secret(pair, e, new_pair_secret(), "drawn")
                        self.state.audit("epoch", role="controlplane", domain=self.config.domain, peer=pair,
                                         code="ok", reason="secret drawn", detail={"pair": pair, "epoch": e})
        return epoch

    # -------------------------------------------------------------- MAKE

    async def record_refusal(self, refused: Refused, *, role: str, domain: str, peer: str, stage: str) -> None:
        """The refusal in the audit log (group committed) before the peer hears of it."""
        try:
            await self.audits.submit(dict(event="refuse", role=role, domain=domain, peer=peer, code=refused.code,
                                          reason=refused.reason, detail={"stage": stage}))
        except (sqlite3.Error, OSError, StateError):
            pass  # the database itself failed: the refusal stands all the same

    async def _refuse(self, exc: MakeError | Refused, *, role: str, domain: str, peer: str, stage: str) -> Refused:
        refused = exc if isinstance(exc, Refused) else Refused(exc.code, str(exc),
                                                              400 if exc.code == "malformed" else 403)
        await self.record_refusal(refused, role=role, domain=domain, peer=peer, stage=stage)
        return refused

    def _expire(self, now: float) -> None:
        for sid in [s for s, p in self.pending.items() if now - p.created > HANDSHAKE_TTL]:
            del self.pending[sid]
        for nonce in [n for n, t in self.nonces.items() if now - t > 2 * HANDSHAKE_TTL]:
            del self.nonces[nonce]

    async def hello(self, msg: Any, peer: str = "") -> dict[str, Any]:
        now = time.monotonic()
        self._expire(now)
        role = str(msg.get("role", "?"))[:16] if isinstance(msg, dict) else "?"
        claimed = str(msg.get("domain", "?"))[:64] if isinstance(msg, dict) else "?"
        try:
            if len(self.pending) >= MAX_PENDING:
                raise Refused("busy", "too many handshakes in flight", 503)
            nonce = msg.get("nonce") if isinstance(msg, dict) else None
            if isinstance(nonce, str) and nonce in self.nonces:
                raise Refused("replay", "client_hello.nonce: this nonce was already used")
            session_id = os.urandom(16)
            reply, pending = self.server.respond(msg, session_id, now)
            self.nonces[str(nonce)] = now
            self.pending[session_id] = pending
            return reply
        except (MakeError, Refused) as exc:
            raise await self._refuse(exc, role=role, domain=claimed, peer=peer, stage="hello") from None
        except Exception as exc:  # a bug or a library surprise: refuse, audit, never a traceback to the peer
            raise await self._refuse(Refused("internal", f"internal error ({exc.__class__.__name__})", 500),
                                     role=role, domain=claimed, peer=peer, stage="hello") from None

    async def finish(self, msg: Any, peer: str = "") -> dict[str, Any]:
        now = time.monotonic()
        role, claimed = "?", "?"
        try:
            sid_text = msg.get("session") if isinstance(msg, dict) else None
            try:
                session_id = bytes.fromhex(sid_text) if isinstance(sid_text, str) and len(sid_text) == 32 else b""
            except ValueError:
                session_id = b""
            pending = self.pending.pop(session_id, None)  # single use: a replayed finish finds nothing
            if pending is None:
                raise Refused("replay", "client_finish.session: unknown, expired or already used handshake")
            role, claimed = pending.hello["role"], pending.hello["domain"]
            if now - pending.created > HANDSHAKE_TTL:
                raise Refused("expired", f"client_finish: the handshake is older than {HANDSHAKE_TTL:.0f} s")
            session = self.server.finish(pending, msg, session_id, self.verify)
            admit(self.config.manifest, self.config.bundle_measurement, session.domain, session.peer,
                  role=session.role, own_domain=self.config.domain)
            try:
                payload = await self._release_node(session, peer) if session.role == "node" \
                    else self._release_peer(session, peer)
            except (StateError, sqlite3.Error, OSError) as exc:
                # Nothing was recorded, so nothing is released (fail closed).
                raise Refused("state", f"the control plane cannot record the release: {exc}", 503) from None
            return session.seal(json.dumps(payload).encode())
        except (MakeError, Refused) as exc:
            raise await self._refuse(exc, role=role, domain=claimed, peer=peer, stage="finish") from None
        except Exception as exc:  # a bug or a library surprise: nothing was released; refuse and audit
            raise await self._refuse(Refused("internal", f"internal error ({exc.__class__.__name__})", 500),
                                     role=role, domain=claimed, peer=peer, stage="finish") from None

    async def abort(self, msg: Any, peer: str = "") -> dict[str, Any]:
        """A client gave up on a handshake (it found the ServerHello or the release wrong): audit it.

        Unauthenticated, so it can only end a handshake and add a row marked as the client's report;
        it never releases anything.
        """
        if not isinstance(msg, dict) or not isinstance(msg.get("session"), str):
            raise await self._refuse(Refused("malformed", "abort: expected a session"), role="?", domain="?",
                                     peer=peer, stage="abort")
        try:
            pending = self.pending.pop(bytes.fromhex(msg["session"][:32]), None)
        except ValueError:
            pending = None
        role, claimed = (pending.hello["role"], pending.hello["domain"]) if pending else ("?", "?")
        await self.record_refusal(Refused(str(msg.get("code"))[:32], "client aborted: " + str(msg.get("reason"))[:300]),
                                  role=role, domain=claimed, peer=peer, stage="client")
        return {"type": "aborted"}

    def verify(self, evidence: Evidence) -> Verified:
        return verify(evidence, self.config.verifier)

    # -------------------------------------------------------------- releases

    def _epoch_secrets(self, pair: str, epochs: tuple[int, ...]) -> dict[int, bytes]:
        out = {}
        for e in epochs:
            secret = self.state.pair_secret(pair, e)
            if secret is not None:
                out[e] = secret
        return out

    async def _release_node(self, session: Session, peer: str) -> dict[str, Any]:
        epoch = self.ensure_epochs()
        pairs_out, previous, missing = [], [], []
        for pair in self.pairs():
            secrets = self._epoch_secrets(pair, (epoch - 1, epoch, epoch + 1))
            if epoch not in secrets:
                missing.append(pair)  # not yet agreed with the keeper: that pair stays fail closed
                continue
            entry: dict[str, Any] = {"domains": list(pair_domains(pair)),
                                     "current": {"epoch": epoch, "key": secrets[epoch].hex()}}
            if epoch + 1 in secrets:
                entry["next"] = {"epoch": epoch + 1, "key": secrets[epoch + 1].hex()}
            if epoch - 1 in secrets:
                previous.append({"domains": list(pair_domains(pair)), "epoch": epoch - 1,
                                 "key": secrets[epoch - 1].hex()})
            pairs_out.append(entry)
        v = session.peer
        sender = await self.commits.submit(dict(
            domain=session.domain, tee=v.tee, simulated=v.simulated, launch=v.launch_measurement,
            bundle=self.config.bundle_measurement, chip_id=str(v.details.get("chip_id", "")), peer=peer,
            detail={"pairs": [p["domains"] for p in pairs_out], "epoch": epoch, "missing": missing,
                    "simulated": v.simulated, "launch_measurement": v.launch_measurement}))
        return {"format": RELEASE_FORMAT, "simulated": v.simulated, "epoch": epoch, "period": self.config.period,
                "keys": {"sealnet_keys": KEY_FILE_FORMAT, "sender": sender, "pairs": pairs_out},
                "previous": previous, "missing": missing}

    def _release_peer(self, session: Session, peer: str) -> dict[str, Any]:
        pair = pair_name(self.config.domain, session.domain)
        if self.keeper_of(pair) != self.config.domain:
            raise Refused("domain", f"this control plane does not keep the secrets of pair {pair}")
        epoch = self.ensure_epochs()
        secrets = self._epoch_secrets(pair, (epoch, epoch + 1))
        self.state.audit("federate", role="controlplane", domain=session.domain, peer=peer, code="ok",
                         reason="pair secrets released to the peer control plane",
                         detail={"pair": pair, "epochs": sorted(secrets), "simulated": session.peer.simulated})
        return {"format": RELEASE_FORMAT, "pair": pair, "simulated": session.peer.simulated,
                "epochs": {str(e): s.hex() for e, s in secrets.items()}}
