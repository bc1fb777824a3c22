"""`sealnet node run`: the node agent as a long-running service.

It holds the data plane of one interface, its keys and its state:
- at start it adopts what runs (the state file and the pins under
  /sys/fs/bpf/sealnet/...), finishing a load or unload that was killed;
- it loads the configured bundle when it is not the one running;
- SIGHUP re-reads the bundle and the key file: a new measurement is an
  atomic replace, new keys a rotation (receive keys first, then send);
- every tick it moves a load whose sequence counters near the end of their
  generation into a fresh one, and ends a rotation's grace period (the
  previous epoch stops being accepted `grace` seconds after the rotation);
- SIGTERM stops the agent and leaves the data plane enforcing (fail closed).

Where bundles and keys come from is a `Source`: files today (`FileSource`);
the control plane's client (`--control URL`) is another Source with the same
two methods, so the loop does not change when it arrives.
Logs are JSON lines on stderr, one event each, never a key.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from cryptography.hazmat.primitives import serialization

from sealnet.contracts import abi
from sealnet.contracts.bundle import BundleError, VerifiedBundle, load_bundle
from sealnet.contracts.errors import UserError
from sealnet.contracts.libbpf import Map, get_pinned
from sealnet.contracts.signing import load_public
from sealnet.runtime import control_client, node, node_metrics, nonce_ledger, seal_keys
from sealnet.runtime.attest import runtime_log, sim
from sealnet.runtime.attest.evidence import EvidenceError
from sealnet.runtime.attest.tsm import TsmAttester, tdx_rtmr_path
from sealnet.runtime.attest.verifier import VerifierConfig
from sealnet.runtime.node_files import NodeFileError, read_bounded

# One TEE, one runtime log. A machine standing in for several nodes (sealnet
# cluster) gives each simulated node its own log through this variable.
RUNTIME_LOG_ENV = "SEALNET_RUNTIME_LOG"
MAX_BUNDLE_BYTES = 256 << 20  # two 64 MiB sections, a header and a signature fit with room
TICK_SECONDS = 1.0
REPLAY_SAVE_SECONDS = 10.0


_LOG_LOCK = threading.Lock()  # an agent serving several nodes logs from several threads


def log(event: str, **fields: Any) -> None:
    """One JSON line per event on stderr (journald and log shippers read it as is)."""
    record = {"ts": round(time.time(), 3), "event": event, **fields}
    line = json.dumps(record, sort_keys=True, default=str) + "\n"
    with _LOG_LOCK:  # print() writes the line and its newline apart: threads would interleave them
        sys.stderr.write(line)
        sys.stderr.flush()


def signer_id(public_key: Any) -> str:
    """A short, stable name for the authority: SHA-256 of its raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:32]


# The last bundles verified, by (path, trust) and what the file system says of both: an agent
# serving several nodes reads and checks a bundle once, not once per node. A changed file
# (size, mtime, inode) is verified again.
_VERIFIED: dict[tuple[Any, ...], tuple[VerifiedBundle, str]] = {}
_VERIFIED_LOCK = threading.Lock()
_VERIFIED_MAX = 4


def _file_identity(path: str) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def verified_bundle(path: str, trust: str) -> tuple[VerifiedBundle, str]:
    """Read (bounded, non-blocking) and verify a bundle; refuses with one line."""
    try:
        key_id = (path, trust, _file_identity(path), _file_identity(trust))
    except OSError:
        key_id = None  # let the reads below say what is wrong
    with _VERIFIED_LOCK:
        if key_id is not None and key_id in _VERIFIED:
            return _VERIFIED[key_id]
    result = _verify_bundle(path, trust)
    if key_id is not None:
        with _VERIFIED_LOCK:
            while len(_VERIFIED) >= _VERIFIED_MAX:
                _VERIFIED.pop(next(iter(_VERIFIED)))
            _VERIFIED[key_id] = result
    return result


def _verify_bundle(path: str, trust: str) -> tuple[VerifiedBundle, str]:
    key = load_public(trust)
    try:
        data = read_bounded(path, MAX_BUNDLE_BYTES, "bundle")
    except NodeFileError as exc:
        raise UserError(str(exc)) from None
    try:
        return load_bundle(data, key), signer_id(key)
    except BundleError as exc:
        raise UserError(f"{path}: refused, nothing loaded: {exc}") from None


def load_verified(verified: VerifiedBundle, signer: str, *, iface: str, netns: str | None,
                  keys: seal_keys.KeyFile | None, keys_path: str, force: bool = False,
                  allow_qdisc_bypass: bool = False) -> node.NodeState:
    manifest = verified.manifest
    policy = manifest.get("policy", {})
    return node.load_object(
        verified.object_bytes, iface=iface, netns=netns, measurement=verified.measurement,
        policy=f"{policy.get('name')} version {policy.get('version')}",
        domain_ids={d["name"]: d["id"] for d in manifest.get("domains", [])}, keys=keys, keys_path=keys_path,
        policy_name=str(policy.get("name", "")), policy_version=int(policy.get("version", 0)),
        signer=signer, rules=list(manifest.get("rules", [])), force=force, allow_qdisc_bypass=allow_qdisc_bypass)


# --------------------------------------------------------------------- sources


@dataclass
class Desired:
    """What the node should run: a verified bundle (or None: keep what runs) and keys."""

    bundle: VerifiedBundle | None
    signer: str
    keys: seal_keys.KeyFile | None
    keys_path: str
    keys_digest: str


class Source(Protocol):
    def desired(self) -> Desired:
        """Read what the node should run now (called at start and on SIGHUP)."""

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when something new is available without a SIGHUP."""


class FileSource:
    def __init__(self, bundle: str | None, trust: str | None, keys: str | None, allow_loose: bool) -> None:
        self.bundle, self.trust, self.keys, self.allow_loose = bundle, trust, keys, allow_loose

    def desired(self) -> Desired:
        verified, signer = verified_bundle(self.bundle, self.trust or "") if self.bundle else (None, "")
        keys, digest = None, ""
        if self.keys:
            keys = seal_keys.load_key_file(self.keys, allow_loose_permissions=self.allow_loose)
            digest = hashlib.sha256(read_bounded(self.keys, seal_keys.MAX_KEY_FILE_BYTES, "key file")).hexdigest()
        return Desired(verified, signer, keys, self.keys or "<keys>", digest)

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return False


_RUNTIME_LOG_LOCKS: dict[str, threading.Lock] = {}
_RUNTIME_LOG_LOCKS_LOCK = threading.Lock()


def _runtime_log_lock(path: str) -> threading.Lock:
    with _RUNTIME_LOG_LOCKS_LOCK:
        return _RUNTIME_LOG_LOCKS.setdefault(os.path.abspath(path), threading.Lock())


class ControlSource:
    """The bundle from files (verified as above); keys from the domain's control plane over MAKE.

    The node's domain is the one whose `nodes` hold the interface's address. Keys are fetched again
    every half epoch period (the control plane announces the next epoch a full period ahead, so the
    node holds it before anyone sends with it). When the control plane is away or refuses, the node
    keeps what it has: without keys, seal traffic is dropped, never sent in clear.
    """

    RETRY_SECONDS = 5.0

    def __init__(self, config: AgentConfig, channel: ControlChannel | None = None) -> None:
        self.config = config
        self.channel = channel
        self.next_refresh = 0.0
        try:
            if config.sim_platform:
                launch = config.sim_launch or ""
                if not launch.startswith("sha384:") or len(launch) != 7 + 96:
                    raise UserError("--sim-launch: required with --sim-platform, as sha384:<96 hex digits>")
                self.attester = sim.load_platform(config.sim_platform, bytes.fromhex(launch[7:])).attest
                self.rtmr_path: str | None = None
            else:
                self.attester = TsmAttester().attest
                self.rtmr_path = tdx_rtmr_path()  # TDX: the bundle measurement goes into RTMR3
            trusted = set()
            for path in config.allow_sim:
                trusted.add(sim.public_fingerprint(sim.load_public(read_bounded(path, 1 << 16, "key"), path)))
        except (EvidenceError, NodeFileError, ValueError) as exc:
            raise UserError(str(exc)) from None
        self.verifier = VerifierConfig(sim_platforms=frozenset(trusted))

    def _domain(self, manifest: dict[str, Any]) -> str:
        address = ipaddress.IPv4Address(node.node_address(self.config.iface, self.config.netns))
        for d in manifest.get("domains", []):
            if any(address in ipaddress.ip_network(n, strict=False) for n in d.get("nodes", [])):
                return str(d["name"])
        raise UserError(f"{self.config.iface}: address {address} is in no domain of the bundle's policy")

    def desired(self) -> Desired:
        cfg = self.config
        verified, signer = verified_bundle(cfg.bundle or "", cfg.trust or "")
        domain = self._domain(verified.manifest)
        try:
            log_file = cfg.runtime_log or os.environ.get(RUNTIME_LOG_ENV) or runtime_log.log_path(node.STATE_DIR)
            with _runtime_log_lock(log_file):  # nodes of one agent sharing a log must not interleave writes
                measured = runtime_log.record_bundle(log_file, verified.measurement, rtmr_path=self.rtmr_path)
        except EvidenceError as exc:
            raise UserError(str(exc)) from None
        def exchange(http: Any = None) -> Any:
            return control_client.attest(
                cfg.control or "", domain=domain, manifest=verified.manifest,
                bundle_measurement=verified.measurement, attester=self.attester, verifier=self.verifier,
                runtime_log=measured, http=http)
        try:
            release = self.channel.run(exchange) if self.channel is not None else asyncio.run(exchange())
        except control_client.ControlError as exc:
            log("control_plane_refused" if exc.code != "unreachable" else "control_plane_unreachable",
                iface=cfg.iface, netns=cfg.netns, code=exc.code, error=str(exc))
            self.next_refresh = time.monotonic() + self.RETRY_SECONDS
            return Desired(verified, signer, None, "<control plane>", "")
        keys_doc = release.payload["keys"]
        digest = hashlib.sha256(json.dumps(keys_doc["pairs"], sort_keys=True).encode()).hexdigest()
        self.next_refresh = time.monotonic() + max(1.0, float(release.payload.get("period", 3600)) / 2)
        log("control_plane_release", iface=cfg.iface, netns=cfg.netns, domain=domain,
            epoch=release.payload.get("epoch"),
            simulated=release.simulated, missing=release.payload.get("missing"))
        return Desired(verified, signer, release.key_file(), "<control plane>", digest)

    def wait(self, timeout: float) -> bool:
        time.sleep(timeout)
        return time.monotonic() >= self.next_refresh


class ControlChannel:
    """One event loop and one keep-alive HTTP session for the MAKE exchanges of every node an agent
    serves: each node still runs its own exchange (own evidence, transcript and release), and
    exchanges of different nodes overlap. `run` is called from any thread and blocks until done."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="make-channel", daemon=True)
        self.thread.start()
        self.http: Any = None

    async def _session(self) -> Any:
        if self.http is None:  # created on the loop that uses it
            self.http = aiohttp.ClientSession(timeout=control_client.TIMEOUT,
                                              connector=aiohttp.TCPConnector(limit=64))
        return self.http

    def run(self, exchange: Any) -> Any:
        async def body() -> Any:
            return await exchange(await self._session())
        return asyncio.run_coroutine_threadsafe(body(), self.loop).result()

    def close(self) -> None:
        async def shut() -> None:
            if self.http is not None:
                await self.http.close()
        try:
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(timeout=5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=5)


# --------------------------------------------------------------------- the agent


@dataclass
class AgentConfig:
    iface: str
    netns: str | None = None
    bundle: str | None = None
    trust: str | None = None
    keys: str | None = None
    control: str | None = None
    metrics: str | None = None
    grace: float = 30.0
    allow_loose_key_permissions: bool = False
    allow_qdisc_bypass: bool = False  # load where the bypass guard cannot run (runtime/node_guard.py)
    sim_platform: str | None = None  # with --control: attest with a SIMULATED platform key (labs)
    sim_launch: str | None = None
    allow_sim: tuple[str, ...] = ()  # with --control: trust a control plane's SIMULATED platform key
    runtime_log: str | None = None  # this node's runtime measurement log (a simulated TEE of its own)


class Agent:
    def __init__(self, config: AgentConfig, source: Source) -> None:
        self.config = config
        self.source = source
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.keys_digest = ""
        self.rotated_at: float | None = None
        self.replay_saved_at = time.monotonic()

    # ---- start: adopt, then converge
    def adopt(self) -> None:
        done = node.recover(self.config.iface, self.config.netns)
        if done:
            log("recovered", iface=self.config.iface, detail=done)
        state = node.read_state(self.config.iface, self.config.netns)
        if state is not None:
            attached = node.attached_program_ids(self.config.iface, self.config.netns)
            log("adopted", iface=self.config.iface, policy=state.policy, measurement=state.measurement,
                enforcing=attached == state.program_ids)

    def converge(self) -> None:
        """Make the node run what the source says (a replace, a rotation, or nothing)."""
        want = self.source.desired()
        cfg = self.config
        state = node.read_state(cfg.iface, cfg.netns)
        if want.bundle is not None and (state is None or state.measurement != want.bundle.measurement):
            started = time.monotonic()
            state = load_verified(want.bundle, want.signer, iface=cfg.iface, netns=cfg.netns, keys=want.keys,
                                  keys_path=want.keys_path, allow_qdisc_bypass=cfg.allow_qdisc_bypass)
            self.keys_digest = want.keys_digest
            log("loaded", iface=cfg.iface, policy=state.policy, measurement=state.measurement,
                program_tags=state.program_tags, seconds=round(time.monotonic() - started, 4))
            return
        if want.keys is not None and want.keys_digest != self.keys_digest and state is not None:
            if not self.keys_digest and state.epochs and self._same_epochs(state, want.keys):
                self.keys_digest = want.keys_digest  # adopted: these keys are the running ones
                want.keys.wipe()
                return
            state = node.install_keys(cfg.iface, cfg.netns, want.keys, want.keys_path)
            self.keys_digest = want.keys_digest
            self.rotated_at = time.monotonic()
            log("keys_installed", iface=cfg.iface, epochs=state.epochs, sender=state.sender)

    @staticmethod
    def _same_epochs(state: node.NodeState, keys: seal_keys.KeyFile) -> bool:
        return all(state.epochs.get(f"{p.domains[0]}->{p.domains[1]}") == p.current[0] for p in keys.pairs)

    # ---- every tick
    def tick(self) -> None:
        state = node.read_state(self.config.iface, self.config.netns)
        if state is None or not state.sealing:
            return
        if self.rotated_at is not None and time.monotonic() - self.rotated_at >= self.config.grace:
            released = node.retire_previous_epochs(self.config.iface, self.config.netns)
            self.rotated_at = None
            log("grace_ended", iface=self.config.iface, released_slots=released)
        self.renew_generation(state)
        if time.monotonic() - self.replay_saved_at >= REPLAY_SAVE_SECONDS:
            node.save_replay_windows(state)  # what a reboot would otherwise forget
            self.replay_saved_at = time.monotonic()

    def renew_generation(self, state: node.NodeState) -> None:
        """Move the counters to a fresh generation long before any CPU's count ends (2^31 of 2^32)."""
        with Map.from_fd(get_pinned(os.path.join(state.pin_dir, abi.SEAL_SEQ_MAP)), owns_fd=True) as seq:
            counts = [int.from_bytes(v[:8], "little") & ((1 << nonce_ledger.GENERATION_SHIFT) - 1)
                      for v in seq.lookup_percpu(bytes(4)) or []]
            if not counts or max(counts) < nonce_ledger.COUNT_RENEW_AT or state.sender is None:
                return
            generation = nonce_ledger.reserve_generation(node.DURABLE_DIR, state.sender)
            seq.update(bytes(4), nonce_ledger.sequence_base(generation).to_bytes(8, "little"))
        log("generation_renewed", iface=self.config.iface, generation=generation)

    def start(self) -> None:
        log("starting", iface=self.config.iface, netns=self.config.netns, pid=os.getpid())
        self.adopt()
        self.converge()

    def step(self, reload: bool) -> None:
        """One turn of the loop: converge when asked (SIGHUP) or when the source has news, then tick."""
        if reload or self.source.wait(0):
            self.reconverge()
        self.safe_tick()

    def reconverge(self) -> None:
        try:
            self.converge()
        except Exception as exc:  # a bad new bundle or key file: keep running the old one
            log("reload_refused", iface=self.config.iface, error=str(exc).splitlines()[0] if str(exc) else repr(exc))

    def safe_tick(self) -> None:
        try:
            self.tick()
        except Exception as exc:
            log("tick_failed", iface=self.config.iface, error=str(exc))

    def finish(self) -> None:
        cfg = self.config
        try:
            state = node.read_state(cfg.iface, cfg.netns)
            if state is not None:
                node.save_replay_windows(state)
        except Exception as exc:  # stopping must not fail over a record
            log("replay_save_failed", iface=cfg.iface, error=str(exc))
        log("stopped", iface=cfg.iface, detail="the data plane stays attached and enforcing")

    def run(self) -> int:
        cfg = self.config
        server = node_metrics.start([(cfg.iface, cfg.netns)], node.STATE_DIR, cfg.metrics) if cfg.metrics else None
        try:
            self.start()
            while not self.stop.is_set():
                reload = self.reload.is_set()
                self.reload.clear()
                self.step(reload)
                self.stop.wait(TICK_SECONDS)
        finally:
            if server is not None:
                server.shutdown()  # type: ignore[attr-defined]
        self.finish()
        return 0


def run(config: AgentConfig) -> int:
    if config.control and (config.keys or not config.bundle):
        raise UserError(f"--control {config.control}: takes the keys from the control plane; "
                        f"give --bundle and --trust, not --keys")
    source: Source = ControlSource(config) if config.control else \
        FileSource(config.bundle, config.trust, config.keys, config.allow_loose_key_permissions)
    agent = Agent(config, source)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    signal.signal(signal.SIGHUP, lambda *_: agent.reload.set())
    return agent.run()
