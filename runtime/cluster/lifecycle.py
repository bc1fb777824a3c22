"""`cluster up` / `down` / `status`: the steps, in order, each timed.

The cluster only orchestrates what a real deployment runs: `policyc keygen`
and `policyc compile` for the authority's signed bundle, the namespaces
standing in for machines, `sealnet controlplane serve` per TEE domain and
`sealnet node run` per group of nodes (runtime/cluster/processes.py starts them).
Every process it starts is recorded in the state directory before it waits
for the next, so `down` stops exactly those (by pid, checked against the
recorded command line) and removes every namespace, pin and state file of
the cluster, also after a crash of `up` itself.

Keys (runtime/cluster/trust.py): by default every node attests to its
domain's control plane with simulated evidence and takes its keys over MAKE
(`--control URL`); with `key_source="static"` the cluster acts as the
operator of a deployment without control planes and writes one static key
file per domain (docs/wire-format.md, "Static keys").
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from sealnet.compiler.frontend import load_policy
from sealnet.compiler.ir import Policy
from sealnet.contracts.errors import OsCallError
from sealnet.runtime import node, replay_store
from sealnet.runtime.cluster import topology
from sealnet.runtime.cluster.processes import (CLUSTER_ENV, alive, exited, last_line, marked_processes, start,
                                               stop, stop_all)
from sealnet.runtime.cluster.state import ClusterError, ClusterState, Process
from sealnet.runtime.cluster.topology import ROLE_CONTROL, ROLE_NODE, UPLINK, Host
from sealnet.runtime.cluster.trust import (audit_keys, new_platform, sim_launch, simulated_policy, tee_domains,
                                           write_static_keys)
from sealnet.runtime.node_agent import RUNTIME_LOG_ENV

__all__ = ["CLUSTER_ENV", "ClusterError", "DEFAULT_STATE_DIR", "KEY_SOURCES", "UPLINK", "alive", "audit_keys",
           "down", "load", "marked_processes", "stop", "up"]

DEFAULT_STATE_DIR = "/run/sealnet-cluster"
# static: key files the cluster writes; control: each node attests to its domain's control plane (MAKE).
KEY_SOURCES = ("static", "control")
BIN_DIR = os.path.dirname(sys.executable)  # policyc and sealnet of this installation
SMALL_DOMAIN = 4  # up to this many nodes in a domain: one agent process per node
AGENTS_PER_DOMAIN = 2  # above: this many agent processes per domain, each serving its share
UNLOAD_WORKERS = 4


class Observer(Protocol):
    """What the command line shows while the cluster comes up or goes down."""

    def phase_started(self, name: str, total: int) -> None: ...
    def advanced(self, done: int) -> None: ...
    def phase_done(self, name: str, seconds: float, detail: str) -> None: ...


class Quiet:
    def phase_started(self, name: str, total: int) -> None:
        pass

    def advanced(self, done: int) -> None:
        pass

    def phase_done(self, name: str, seconds: float, detail: str) -> None:
        pass


def _tool(name: str) -> str:
    path = os.path.join(BIN_DIR, name)
    return path if os.path.exists(path) else name


def _run(argv: list[str], what: str, timeout: float = 300.0) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise ClusterError(f"{what} failed ({proc.returncode}): {last[0]}")
    return proc.stdout


# --------------------------------------------------------------------------- phases


@dataclass
class _Phase:
    state: ClusterState
    observer: Observer
    name: str
    total: int = 1
    detail: str = ""
    started: float = field(default=0.0)

    def __enter__(self) -> _Phase:
        self.observer.phase_started(self.name, self.total)
        self.started = time.perf_counter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            seconds = time.perf_counter() - self.started
            self.state.phases[self.name] = seconds
            self.state.save()
            self.observer.phase_done(self.name, seconds, self.detail)


def _start_control_planes(state: ClusterState, policy: Policy, controls: list[Host], observer: Observer,
                          timeout: float, node_platforms: dict[str, str]) -> None:
    """`sealnet controlplane serve` per TEE domain, in its namespace, with a
    simulated platform key each (as `sealnet attest sim-keygen` makes them);
    every control plane accepts the others' simulated evidence and knows
    them as federation peers."""
    cp_dir = state.file("cp")
    os.makedirs(cp_dir, mode=0o700, exist_ok=True)
    platform = {h.domain: os.path.join(cp_dir, f"{h.domain}.platform") for h in controls}
    for path in platform.values():
        new_platform(path)
    allow = [arg for path in [*platform.values(), *node_platforms.values()] for arg in ("--allow-sim", path + ".pub")]
    assert state.bundle and state.authority_public
    # One at a time, in name order: a pair's keeper is the smaller name
    # (keyschedule.keeper), so each control plane finds the keepers it
    # fetches from already serving when it first syncs.
    for host in sorted(controls, key=lambda h: h.domain):
        peers = [arg for h in controls if h is not host for arg in ("--peer", f"{h.domain}=http://{h.address}:{h.port}")]
        argv = [_tool("sealnet"), "controlplane", "serve", "--bundle", state.bundle, "--trust", state.authority_public,
                "--domain", host.domain, "--db", os.path.join(cp_dir, f"{host.domain}.db"),
                "--listen", f"{host.address}:{host.port}", "--sim-platform", platform[host.domain],
                "--sim-launch", sim_launch(policy, host.domain), *allow, *peers]
        started = [start(state, "controlplane", host, argv, in_netns=True)]
        _wait_ready(started, _control_plane_ready, Quiet(), timeout, "control plane")
        observer.advanced(len(state.processes))


def _control_plane_ready(process: Process) -> bool:
    try:
        with open(process.log, "rb") as fh:
            return b"serving domain" in fh.read()
    except OSError:
        return False


def _wait_ready(started: list[Process], ready: Any, observer: Observer, timeout: float, what: str) -> None:
    pending = list(started)
    deadline = time.monotonic() + timeout
    while pending:
        for process in list(pending):
            if ready(process):
                pending.remove(process)
            elif exited(process.pid):
                raise ClusterError(f"{what} of {process.host} exited: {last_line(process.log)}")
        observer.advanced(len(started) - len(pending))
        if pending and time.monotonic() > deadline:
            raise ClusterError(f"{what} of {pending[0].host} not ready after {timeout:.0f} s: "
                               f"{last_line(pending[0].log)}")
        if pending:
            time.sleep(0.05)


def agent_groups(hosts: list[Host], nodes_per_agent: int | None) -> list[list[Host]]:
    """The nodes of each domain, in order, in groups of up to `nodes_per_agent`: one
    `sealnet node run` each. By default one agent per node up to SMALL_DOMAIN nodes in a
    domain (what a deployment of one node per machine runs), else AGENTS_PER_DOMAIN agents
    per domain: each agent starts its nodes on a pool of threads, so a few processes keep
    two cores busy, and a process costs about half a CPU-second before its first node."""
    by_domain: dict[str, list[Host]] = {}
    for h in hosts:
        by_domain.setdefault(h.domain, []).append(h)
    groups = []
    for members in by_domain.values():
        size = nodes_per_agent or (1 if len(members) <= SMALL_DOMAIN else -(-len(members) // AGENTS_PER_DOMAIN))
        groups += [members[i:i + size] for i in range(0, len(members), size)]
    return groups


def _directions(policy: Policy, domain: str, keyed: list[str]) -> set[str]:
    return {f"{a}->{b}" for other in keyed if other != domain for a, b in ((domain, other), (other, domain))}


def _node_ready(host: Host, expected: set[str]) -> bool:
    """Ready: the node's data plane is loaded, sealing, with an epoch for
    every direction between its domain and each other TEE domain."""
    try:
        st = node.read_state(UPLINK, host.netns)
    except Exception:
        return False
    return bool(st and st.sealing and expected <= set(st.epochs))


def _wait_nodes(started: list[Process], hosts: dict[str, Host], expected: dict[str, set[str]], observer: Observer,
                timeout: float) -> None:
    """Until every node of every agent is ready; an agent that exits fails `up`."""
    pending = {name: p for p in started for name in p.hosts}
    deadline = time.monotonic() + timeout
    while pending:
        for name, process in list(pending.items()):
            if _node_ready(hosts[name], expected[name]):
                del pending[name]
            elif exited(process.pid):
                raise ClusterError(f"node agent of {name} exited: {last_line(process.log)}")
        observer.advanced(len(hosts) - len(pending))
        if pending and time.monotonic() > deadline:
            name, process = next(iter(pending.items()))
            raise ClusterError(f"node {name} not ready after {timeout:.0f} s: {last_line(process.log)}")
        if pending:
            time.sleep(0.05)


def up(policy_path: str, nodes_per_domain: int, state_dir: str, *, key_source: str = "control",
       observer: Observer | None = None, timeout: float = 120.0, nodes_per_agent: int | None = None) -> ClusterState:
    """Bring the cluster up; on failure everything is taken down again and
    the error re-raised."""
    observer = observer or Quiet()
    if key_source not in KEY_SOURCES:
        raise ClusterError(f"--keys {key_source}: one of {', '.join(KEY_SOURCES)}")
    if nodes_per_agent is not None and nodes_per_agent < 1:
        raise ClusterError("--nodes-per-agent: at least 1")
    existing = ClusterState.load(state_dir)
    if existing is not None:
        raise ClusterError(f"{state_dir}: a cluster ({existing.cluster_id}) is recorded here; "
                           f"`sealnet cluster down --state {state_dir}` first")
    policy, diagnostics = load_policy(policy_path)
    if policy is None:
        first = next((d for d in diagnostics), None)
        raise ClusterError(f"{policy_path}: the policy has errors" + (f": {first}" if first else ""))
    cluster_id = secrets.token_hex(4)
    try:
        layout = topology.plan(policy, nodes_per_domain, cluster_id)
    except topology.TopologyError as exc:
        raise ClusterError(f"{policy_path}: {exc}") from None
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    state = ClusterState(state_dir, os.path.abspath(policy_path), cluster_id, nodes_per_domain, key_source, layout)
    state.save()
    try:
        _up(state, policy, observer, timeout, nodes_per_agent)
    except BaseException as exc:
        down(state_dir, keep_logs=True)  # the logs say why
        if isinstance(exc, OsCallError):
            raise ClusterError(f"cluster up: {exc}") from None
        raise
    state.complete = True
    state.save()
    return state


def _up(state: ClusterState, policy: Policy, observer: Observer, timeout: float,
        nodes_per_agent: int | None) -> None:
    layout = state.layout
    assert layout is not None
    with _Phase(state, observer, "bundle") as phase:
        authority = state.file("authority.key")
        _run([_tool("policyc"), "keygen", authority], "policyc keygen")
        state.authority_public = authority + ".pub"
        state.bundle = state.file("bundle.snb")
        source = state.policy
        if state.key_source == "control":
            source, policy = simulated_policy(state, policy)
        argv = [_tool("policyc"), "compile", source, "-o", state.bundle, "--sign-key", authority, "--format", "json"]
        out = json.loads(_run(argv, "policyc compile"))
        phase.detail = (f"{policy.name} version {policy.version}, measurement {out['measurement'][:23]}..."
                        + (f" (from {os.path.basename(source)}: TEEs simulated)" if source != state.policy else ""))

    with _Phase(state, observer, "topology", total=len(layout.hosts)) as phase:
        topology.build(layout, lambda done, total: observer.advanced(done))
        phase.detail = f"{len(layout.hosts)} namespaces behind the wan namespace {layout.wan_netns}"

    keyed = tee_domains(policy)
    controls = [h for h in layout.hosts if h.role == ROLE_CONTROL]
    cp_url = {h.domain: f"http://{h.address}:{h.port}" for h in controls}
    with _Phase(state, observer, "keys") as phase:
        key_files: dict[str, str] = {}
        node_platforms: dict[str, str] = {}
        if state.key_source == "static":
            key_files = write_static_keys(state, policy)
            phase.detail = f"static key files for {', '.join(key_files)} (no attested release)"
        else:
            os.makedirs(state.file("cp"), mode=0o700, exist_ok=True)
            node_platforms = {d: new_platform(state.file("cp", f"{d}.nodes.platform")) for d in keyed}
            phase.detail = (f"SIMULATED platform keys for the nodes of {', '.join(keyed)}: "
                            f"keys come from the control planes over MAKE")

    with _Phase(state, observer, "control planes", total=len(controls)) as phase:
        _start_control_planes(state, policy, controls, observer, timeout, node_platforms)
        phase.detail = (f"{len(controls)} serving with SIMULATED evidence (no TEE on this machine)"
                        + ("; the nodes do not attest to them (static keys)" if state.key_source == "static" else ""))

    agents = [h for h in layout.hosts if h.role == ROLE_NODE and h.domain in keyed]
    groups = agent_groups(agents, nodes_per_agent)
    with _Phase(state, observer, "nodes", total=len(agents)) as phase:
        started = []
        control_pubs = [arg for h in controls for arg in ("--allow-sim", state.file("cp", f"{h.domain}.platform.pub"))]
        for group in groups:
            first = group[0]
            argv = [_tool("sealnet"), "node", "run"]
            # Each simulated node is its own TEE, with its own runtime measurement log.
            logs = {h.name: state.file("nodes", h.name, "runtime-log.json") for h in group}
            for path in logs.values():
                os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            if len(group) == 1:
                argv += ["--iface", UPLINK, "--netns", first.netns]
            else:
                node_list = state.file("nodes", f"agent-{first.name}.json")
                with open(node_list, "w") as fh:
                    json.dump({"nodes": [{"iface": UPLINK, "netns": h.netns, "runtime_log": logs[h.name]}
                                         for h in group]}, fh)
                argv += ["--node-list", node_list]
            argv += ["--bundle", state.bundle, "--trust", state.authority_public]
            if state.key_source == "static":
                argv += ["--keys", key_files[first.domain]]
            else:
                argv += ["--control", cp_url[first.domain], "--sim-platform", node_platforms[first.domain],
                         "--sim-launch", sim_launch(policy, first.domain), *control_pubs]
            # In the first node's network namespace: its nodes reach their control plane from there
            # (MAKE authenticates the node, not its address).
            started.append(start(state, "node", first, argv, in_netns=True, env={RUNTIME_LOG_ENV: logs[first.name]},
                                 serves=[h.name for h in group] if len(group) > 1 else None))
        expected = {h.name: _directions(policy, h.domain, keyed) for h in agents}
        _wait_nodes(started, {h.name: h for h in agents}, expected, observer, timeout)
        how = "attested (SIMULATED evidence) and keyed by their control planes" if state.key_source == "control" \
            else "keyed from static files"
        untrusted = [h.name for h in layout.hosts if h.role == ROLE_NODE and h.domain not in keyed]
        phase.detail = (f"{len(agents)} nodes in {len(groups)} agent processes loaded, {how}, enforcing"
                        + (f"; {len(untrusted)} nodes of TEE-less domains run none" if untrusted else ""))


# --------------------------------------------------------------------------- down


@dataclass
class DownReport:
    stopped: int = 0
    unloaded: int = 0
    namespaces: int = 0
    swept: int = 0
    problems: list[str] = field(default_factory=list)


def _sweep_node_leftovers(cluster_id: str) -> int:
    """Pins and node state files of this cluster's namespaces that an unload
    could not reach (the namespace or the agent died first)."""
    # Pin directories and state files are named by slug(iface, netns), which starts with the netns name.
    prefix = f"{topology.NAME_PREFIX}{cluster_id}-"
    removed = 0
    # The replay windows an unload keeps on disk for the node's next load (runtime/replay_store.py):
    # these nodes have no next load. The sequence ledger stays: it is what keeps a sender's nonces unique.
    replay_dir = os.path.dirname(replay_store.store_path(node.DURABLE_DIR, "x"))
    for root in (node.PIN_ROOT, node.STATE_DIR, replay_dir):
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            continue
        for name in names:
            if not name.startswith(prefix):
                continue
            path = os.path.join(root, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            removed += 1
    return removed


_OWNED = ("cluster.json", "authority.key", "authority.key.pub", "bundle.snb", "policy.sim.policy", "keys", "cp",
          "nodes", "logs")


def down(state_dir: str, observer: Observer | None = None, *, keep_logs: bool = False) -> DownReport:
    """Stop the cluster's processes, unload its data planes, remove its
    namespaces, pins, state and files. Idempotent."""
    observer = observer or Quiet()
    report = DownReport()
    state = ClusterState.load(state_dir)
    if state is None:
        return report
    with _Phase(state, observer, "stop processes", total=len(state.processes)) as phase:
        # Nodes before control planes, all at once: each agent's shutdown waits on nothing else.
        nodes = [p for p in state.processes if p.role == "node"]
        others = [p for p in state.processes if p.role != "node"]
        report.stopped = stop_all(nodes) + stop_all(others)
        # Started but not recorded: `up` was killed between a spawn and its record.
        report.stopped += stop_all(marked_processes(state.cluster_id))
        observer.advanced(len(state.processes))
        phase.detail = f"{report.stopped} running"
    hosts = [h for h in state.layout.hosts if h.role == ROLE_NODE] if state.layout else []
    with _Phase(state, observer, "unload", total=len(hosts)) as phase:
        def unload(host: Host) -> tuple[bool, list[str]]:
            if node.read_state(UPLINK, host.netns) is None:
                return False, []
            try:
                return True, node.unload(UPLINK, host.netns, open_sealed_flows=True)
            except node.NodeError as exc:
                return False, [str(exc)]
        # Each node on its own interface and lock: a few at a time (netlink, fsyncs overlap).
        with ThreadPoolExecutor(max_workers=UNLOAD_WORKERS) as pool:
            for i, (unloaded, problems) in enumerate(pool.map(unload, hosts), start=1):
                report.unloaded += unloaded
                report.problems += problems
                observer.advanced(i)
        phase.detail = f"{report.unloaded} data planes"
    with _Phase(state, observer, "namespaces") as phase:
        report.namespaces = topology.teardown(state.cluster_id)
        report.swept = _sweep_node_leftovers(state.cluster_id)
        phase.detail = f"{report.namespaces} removed" + (f", {report.swept} stray pins or state files" if report.swept else "")
    for name in _OWNED:
        if keep_logs and name == "logs":
            continue
        path = os.path.join(state_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.unlink(path)
    try:
        os.rmdir(state_dir)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.ENOENT, errno.EEXIST):
            report.problems.append(f"{state_dir}: {exc.strerror}")
    return report


def load(state_dir: str) -> ClusterState:
    state = ClusterState.load(state_dir)
    if state is None:
        raise ClusterError(f"{state_dir}: no cluster recorded here (sealnet cluster up ... --state {state_dir})")
    return state

