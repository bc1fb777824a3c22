"""`sealnet node run` serving several nodes in one process.

Each node keeps its own identity, exactly as with one agent per node: its own
`Agent` and `Source`, its own attestation over MAKE to its domain's control
plane (own evidence, transcript and release), its own data plane, state and
pins under /sys/fs/bpf/sealnet/<netns>--<iface>, its own sender id (its
address), generation ledger entry, counters and replay windows. A node that
is refused keys loads without keys (its seal traffic is dropped) while the
others of the process are keyed.

What the nodes share is what costs and carries no identity:
- the process: Python and its imports once (about half a CPU-second each);
- the bundle, read and verified once (node_agent.verified_bundle);
- one event loop and keep-alive HTTP session for the MAKE exchanges
  (node_agent.ControlChannel), so exchanges of different nodes overlap;
- a thread pool in which the nodes start: while one node waits on the
  control plane another loads, and the kernel verifier runs with the GIL
  released (ctypes), so loads of different nodes use every core.

The BPF object is loaded once per node, not once per process: the sender id,
key slots, sequence counters, replay windows and counters live in the
object's maps, one set per node (docs/make.md says what sharing would take).
Once every node is up, nodes are ticked in turn, at most TICKS_PER_SECOND a
second, so a process of a thousand nodes does not spin on its ticks.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from sealnet.contracts.errors import UserError
from sealnet.runtime import node, node_metrics
from sealnet.runtime.node_agent import (TICK_SECONDS, Agent, AgentConfig, ControlChannel, ControlSource, FileSource,
                                        Source, log)
from sealnet.runtime.node_list import NodeSpec

# Threads that start nodes: enough to keep both cores in the verifier while others wait on MAKE.
WORKERS = 8
TICKS_PER_SECOND = 200
RETRY_SECONDS = 5.0  # a node that failed to start is tried again


def configs(base: AgentConfig, specs: list[NodeSpec]) -> list[AgentConfig]:
    """One AgentConfig per node; refuses what one TEE cannot truthfully attest."""
    if not specs:
        raise UserError("node run: no node given (--iface, or --node-list FILE)")
    if not base.sim_platform and any(s.runtime_log for s in specs):
        raise UserError("node list: runtime_log per node needs --sim-platform (a TEE keeps one runtime log)")
    if base.control and len({s.bundle or base.bundle for s in specs}) > 1 and not all(s.runtime_log for s in specs):
        # One runtime log names one bundle as running: nodes that attest from one log run one bundle.
        raise UserError("node list: nodes with different bundles each need their own runtime_log "
                        "(simulated TEEs); on one real TEE, one bundle")
    if any(s.bundle for s in specs) and not base.trust:
        raise UserError("node list: a node's bundle needs --trust")
    return [dataclasses.replace(base, iface=s.iface, netns=s.netns, runtime_log=s.runtime_log or base.runtime_log,
                                bundle=s.bundle or base.bundle) for s in specs]


def _source(cfg: AgentConfig, channel: ControlChannel | None) -> Source:
    if cfg.control:
        return ControlSource(cfg, channel)
    return FileSource(cfg.bundle, cfg.trust, cfg.keys, cfg.allow_loose_key_permissions)


class NodeGroup:
    def __init__(self, node_configs: list[AgentConfig], workers: int = WORKERS) -> None:
        self.channel = ControlChannel() if node_configs[0].control else None
        self.agents = [Agent(cfg, _source(cfg, self.channel)) for cfg in node_configs]
        self.workers = max(1, min(workers, len(self.agents)))
        self.stop = threading.Event()
        self.reload = threading.Event()

    def _parallel(self, agents: list[Agent], call: Callable[[Agent], None]) -> dict[int, BaseException]:
        """Run `call` for each agent on the pool; the failures, by position in `agents`."""
        failures: dict[int, BaseException] = {}
        if not agents:
            return failures
        with ThreadPoolExecutor(max_workers=min(self.workers, len(agents)), thread_name_prefix="node") as pool:
            futures = [pool.submit(call, a) for a in agents]
            for i, fut in enumerate(futures):
                exc = fut.exception()
                if exc is not None:
                    failures[i] = exc
        return failures

    def _start(self, agents: list[Agent]) -> list[tuple[Agent, BaseException]]:
        failures = self._parallel(agents, Agent.start)
        failed = [(agents[i], exc) for i, exc in sorted(failures.items())]
        for agent, exc in failed:
            log("start_failed", iface=agent.config.iface, netns=agent.config.netns,
                error=str(exc).splitlines()[0] if str(exc) else repr(exc), retry_s=RETRY_SECONDS)
        return failed

    def run(self) -> int:
        started = time.monotonic()
        log("serving", nodes=len(self.agents), workers=self.workers, pid=os.getpid())
        first = self.agents[0].config
        server = node_metrics.start([(a.config.iface, a.config.netns) for a in self.agents], node.STATE_DIR,
                                    first.metrics) if first.metrics else None
        try:
            failed = self._start(self.agents)
            if len(failed) == len(self.agents):
                raise failed[0][1]  # nothing serves: say why, as a one-node agent does
            running = [a for a in self.agents if all(a is not f for f, _ in failed)]
            pending = [f for f, _ in failed]
            log("nodes_started", nodes=len(running), failed=len(pending),
                seconds=round(time.monotonic() - started, 3))
            retry_at = time.monotonic() + RETRY_SECONDS
            turn = 0
            while not self.stop.is_set():
                reload = self.reload.is_set()
                self.reload.clear()
                due = [a for a in running if reload or a.source.wait(0)]
                self._parallel(due, Agent.reconverge)  # reconverge logs its own refusals
                if pending and (reload or time.monotonic() >= retry_at):
                    again = {id(a) for a, _ in self._start(pending)}
                    running += [a for a in pending if id(a) not in again]
                    pending = [a for a in pending if id(a) in again]
                    retry_at = time.monotonic() + RETRY_SECONDS
                # Each node's tick, in turn, at most TICKS_PER_SECOND a second.
                for _ in range(min(len(running), int(TICKS_PER_SECOND * TICK_SECONDS))):
                    running[turn % len(running)].safe_tick()
                    turn += 1
                self.stop.wait(TICK_SECONDS)
        finally:
            if server is not None:
                server.shutdown()  # type: ignore[attr-defined]
            if self.channel is not None:
                self.channel.close()
        for agent in self.agents:
            agent.finish()
        return 0


def run(base: AgentConfig, specs: list[NodeSpec]) -> int:
    if base.control and (base.keys or not base.bundle):
        raise UserError(f"--control {base.control}: takes the keys from the control plane; "
                        f"give --bundle and --trust, not --keys")
    group = NodeGroup(configs(base, specs))
    signal.signal(signal.SIGTERM, lambda *_: group.stop.set())
    signal.signal(signal.SIGINT, lambda *_: group.stop.set())
    signal.signal(signal.SIGHUP, lambda *_: group.reload.set())
    return group.run()
