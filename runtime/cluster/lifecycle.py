"""`cluster up` / `down` / `status`: the steps, in order, each timed.

The cluster only orchestrates what a real deployment runs: `policyc keygen`
and `policyc compile` for the authority's signed bundle, the namespaces
standing in for machines, and `sealnet node run` per node (with
`sealnet controlplane serve` per domain once nodes take their keys from it).
Every process it starts is recorded in the state directory before it waits
for the next, so `down` stops exactly those (by pid, checked against the
recorded command line) and removes every namespace, pin and state file of
the cluster, also after a crash of `up` itself.

Keys: with `key_source="static"` the cluster acts as the operator of a
deployment without control planes and writes one static key file per domain
(docs/wire-format.md, "Static keys"); the node agents read them with
`--keys`. The attested release (`--control URL`) is the other source.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from sealnet.compiler.frontend import compile_text, load_policy
from sealnet.compiler.ir import Policy, TeeKind
from sealnet.contracts.errors import OsCallError, UserError
from sealnet.runtime import node
from sealnet.runtime import control_client
from sealnet.runtime.attest import sim
from sealnet.runtime.attest.sim import SimPlatform
from sealnet.runtime.attest.verifier import VerifierConfig
from sealnet.contracts.bundle import load_bundle
from sealnet.contracts.signing import load_public
from sealnet.runtime.seal_keys import KeyFile, load_key_file
from sealnet.runtime.cluster import topology
from sealnet.runtime.cluster.state import ClusterState, Process
from sealnet.runtime.cluster.topology import ROLE_CONTROL, ROLE_NODE, UPLINK, Host
from sealnet.runtime.netns import NETNS_RUN_DIR, run_in_netns
from sealnet.runtime.node_agent import RUNTIME_LOG_ENV
from sealnet.runtime.seal_keys import format_key_file
from sealnet.runtime.seal_wire import PAIR_KEY_LEN

DEFAULT_STATE_DIR = "/run/sealnet-cluster"
# static: key files the cluster writes; control: each node attests to its domain's control plane (MAKE).
KEY_SOURCES = ("static", "control")
STOP_SECONDS = 10.0
CLUSTER_ENV = "SEALNET_CLUSTER"  # in the environment of every process a cluster starts
BIN_DIR = os.path.dirname(sys.executable)
# A simulated TEE's launch measurement when the policy lists none for its domain.
SIM_LAUNCH = "sha384:" + hashlib.sha384(b"sealnet simulated launch (no TEE)").hexdigest()  # policyc and sealnet of this installation


class ClusterError(UserError):
    """`up`, `down` or `status` cannot go on; one line naming what and where."""


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


# --------------------------------------------------------------------------- processes


# nsenter switches only the network namespace: `ip netns exec` would also give
# the process a private /sys, hiding /sys/fs/bpf where the node agent pins.
_NSENTER = "nsenter"


def _start(state: ClusterState, role: str, host: Host, argv: list[str], *, in_netns: bool = False,
           env: dict[str, str] | None = None) -> Process:
    """Start `argv`, inside the host's namespace when `in_netns`, and record it."""
    logs = state.file("logs")
    os.makedirs(logs, exist_ok=True)
    log = os.path.join(logs, f"{role}-{host.name}.log")
    spawn = [_NSENTER, f"--net={os.path.join(NETNS_RUN_DIR, host.netns)}", *argv] if in_netns else argv
    with open(log, "ab") as out:
        # The marker lets `down` find it even if we die between this spawn and the save below.
        proc = subprocess.Popen(spawn, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                env={**os.environ, **(env or {}), CLUSTER_ENV: state.cluster_id})
    record = Process(role, host.name, proc.pid, spawn, log)
    state.processes.append(record)
    state.save()
    return record


def _ours(process: Process) -> bool:
    """The pid still runs the command we started (pids are reused). A script's
    interpreter comes first in /proc/PID/cmdline, so compare the tail; a
    command started in a namespace is `nsenter --net=NS argv` until nsenter execs it."""
    wanted = [process.argv]
    if process.argv[0] == _NSENTER:
        wanted.append(process.argv[2:])
    try:
        with open(f"/proc/{process.pid}/cmdline", "rb") as fh:
            running = [a.decode(errors="replace") for a in fh.read().split(b"\0")[:-1]]
            return any(running[-len(want):] == want for want in wanted)
    except OSError:
        return False


def alive(process: Process) -> bool:
    if not _ours(process):
        return False
    try:
        with open(f"/proc/{process.pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _exited(pid: int) -> bool:
    """Our child `pid` has ended (reaped here). Not `alive()`: while nsenter
    execs the real program, its command line is briefly neither."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return not os.path.exists(f"/proc/{pid}")


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def marked_processes(cluster_id: str) -> list[Process]:
    """Processes that carry this cluster's marker in their environment."""
    marker = f"{CLUSTER_ENV}={cluster_id}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if marker not in fh.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                argv = [a.decode(errors="replace") for a in fh.read().split(b"\0")[:-1]]
        except OSError:
            continue
        if argv:
            found.append(Process("unrecorded", "?", int(entry), argv, ""))
    return found


def stop_all(processes: list[Process], timeout: float = STOP_SECONDS) -> int:
    """SIGTERM to every one still ours, then wait for all; SIGKILL those left
    after `timeout`. Returns how many were running."""
    running = [p for p in processes if alive(p)]
    for p in running:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    left = list(running)
    while left and time.monotonic() < deadline:
        for p in list(left):
            _reap(p.pid)
            if not alive(p):
                left.remove(p)
        if left:
            time.sleep(0.02)
    for p in left:
        stop(p, timeout=0)
    return len(running)


def stop(process: Process, timeout: float = STOP_SECONDS) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True when it was running."""
    if not alive(process):
        return False
    try:
        os.kill(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(process.pid)
        if not alive(process):
            return True
        time.sleep(0.02)
    try:
        os.kill(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    while alive(process):
        _reap(process.pid)
        time.sleep(0.02)
    return True


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            lines = [ln for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][-300:] if lines else "no output"


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


def _tee_domains(policy: Policy) -> list[str]:
    return [d.name for d in policy.domains if d.tee is not TeeKind.NONE]


def write_static_keys(state: ClusterState, policy: Policy) -> dict[str, str]:
    """One key file per TEE domain holding a fresh key for every pair it is
    part of; mode 0600, in the state directory. Returns domain -> path."""
    domains = _tee_domains(policy)
    pair_keys = {(a, b): os.urandom(PAIR_KEY_LEN) for i, a in enumerate(domains) for b in domains[i + 1:]}
    keys_dir = state.file("keys")
    os.makedirs(keys_dir, mode=0o700, exist_ok=True)
    paths: dict[str, str] = {}
    for domain in domains:
        mine = {pair: {"current": (1, key)} for pair, key in pair_keys.items() if domain in pair}
        path = os.path.join(keys_dir, f"{domain}.keys")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(format_key_file(None, mine))
        paths[domain] = path
    return paths


def simulated_policy_text(text: str, policy: Policy, layout: topology.Layout) -> str:
    """The policy with every TEE domain declared `tee sim`, accepting the
    simulated launch measurement, with its control plane's address: what an
    authority signs for a lab without TEEs. Everything else is unchanged."""
    out = text
    for domain in policy.domains:
        if domain.tee is TeeKind.NONE:
            continue
        match = re.search(rf"\bdomain\s+{re.escape(domain.name)}\s*\{{([^}}]*)\}}", out)
        if match is None:
            raise ClusterError(f"{policy.file}: cannot find the block of domain {domain.name!r} to simulate its TEE")
        body = re.sub(r"\btee\s+[A-Za-z0-9_-]+", "tee sim", match.group(1), count=1)
        if not domain.measurements:
            body = body.rstrip() + f'; measurement "{SIM_LAUNCH}" '
        if not domain.control_plane:
            cp = layout.by_domain(domain.name, ROLE_CONTROL)[0]
            body = body.rstrip() + f"; control {cp.address}:{cp.port} "
        out = out[: match.start(1)] + body + out[match.end(1) :]
    return out


def _simulated_policy(state: ClusterState, policy: Policy) -> tuple[str, Policy]:
    assert state.layout is not None
    with open(state.policy) as fh:
        text = simulated_policy_text(fh.read(), policy, state.layout)
    path = state.file("policy.sim.policy")
    with open(path, "w") as fh:
        fh.write(text)
    simulated, diagnostics = compile_text(text, path)
    if simulated is None:
        first = next(iter(diagnostics), None)
        raise ClusterError(f"{path}: the policy with simulated TEEs does not compile" + (f": {first}" if first else ""))
    return path, simulated


def _sim_launch(policy: Policy, domain: str) -> str:
    """The launch measurement a simulated TEE reports: the first one the
    policy accepts for the domain (a TEE launched from an approved image),
    else a fixed, recognisable stand-in."""
    accepted = policy.domain(domain).measurements
    return accepted[0] if accepted else SIM_LAUNCH


def _new_platform(path: str) -> str:
    """A simulated platform key pair, as `sealnet attest sim-keygen` writes it; returns the key's path."""
    key = SimPlatform.generate(bytes(48))
    key.save(path)
    with open(path + ".pub", "wb") as fh:
        fh.write(key.public_pem())
    return path


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
        _new_platform(path)
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
                "--sim-launch", _sim_launch(policy, host.domain), *allow, *peers]
        started = [_start(state, "controlplane", host, argv, in_netns=True)]
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
            elif _exited(process.pid):
                raise ClusterError(f"{what} of {process.host} exited: {_last_line(process.log)}")
        observer.advanced(len(started) - len(pending))
        if pending and time.monotonic() > deadline:
            raise ClusterError(f"{what} of {pending[0].host} not ready after {timeout:.0f} s: "
                               f"{_last_line(pending[0].log)}")
        if pending:
            time.sleep(0.05)


def _directions(policy: Policy, domain: str, keyed: list[str]) -> set[str]:
    return {f"{a}->{b}" for other in keyed if other != domain for a, b in ((domain, other), (other, domain))}


def _agent_ready(expected: dict[str, set[str]], netns_of: dict[str, str]) -> Any:
    """Ready: the agent's data plane is loaded, sealing, with an epoch for
    every direction between its domain and each other TEE domain."""
    def ready(process: Process) -> bool:
        try:
            st = node.read_state(UPLINK, netns_of[process.host])
        except Exception:
            return False
        return bool(st and st.sealing and expected[process.host] <= set(st.epochs))
    return ready


def up(policy_path: str, nodes_per_domain: int, state_dir: str, *, key_source: str = "control",
       observer: Observer | None = None, timeout: float = 120.0) -> ClusterState:
    """Bring the cluster up; on failure everything is taken down again and
    the error re-raised."""
    observer = observer or Quiet()
    if key_source not in KEY_SOURCES:
        raise ClusterError(f"--keys {key_source}: one of {', '.join(KEY_SOURCES)}")
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
        _up(state, policy, observer, timeout)
    except BaseException as exc:
        down(state_dir, keep_logs=True)  # the logs say why
        if isinstance(exc, OsCallError):
            raise ClusterError(f"cluster up: {exc}") from None
        raise
    state.complete = True
    state.save()
    return state


def _up(state: ClusterState, policy: Policy, observer: Observer, timeout: float) -> None:
    layout = state.layout
    assert layout is not None
    with _Phase(state, observer, "bundle") as phase:
        authority = state.file("authority.key")
        _run([_tool("policyc"), "keygen", authority], "policyc keygen")
        state.authority_public = authority + ".pub"
        state.bundle = state.file("bundle.snb")
        source = state.policy
        if state.key_source == "control":
            source, policy = _simulated_policy(state, policy)
        argv = [_tool("policyc"), "compile", source, "-o", state.bundle, "--sign-key", authority, "--format", "json"]
        out = json.loads(_run(argv, "policyc compile"))
        phase.detail = (f"{policy.name} version {policy.version}, measurement {out['measurement'][:23]}..."
                        + (f" (from {os.path.basename(source)}: TEEs simulated)" if source != state.policy else ""))

    with _Phase(state, observer, "topology", total=len(layout.hosts)) as phase:
        topology.build(layout, lambda done, total: observer.advanced(done))
        phase.detail = f"{len(layout.hosts)} namespaces behind the wan namespace {layout.wan_netns}"

    keyed = _tee_domains(policy)
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
            node_platforms = {d: _new_platform(state.file("cp", f"{d}.nodes.platform")) for d in keyed}
            phase.detail = (f"SIMULATED platform keys for the nodes of {', '.join(keyed)}: "
                            f"keys come from the control planes over MAKE")

    with _Phase(state, observer, "control planes", total=len(controls)) as phase:
        _start_control_planes(state, policy, controls, observer, timeout, node_platforms)
        phase.detail = (f"{len(controls)} serving with SIMULATED evidence (no TEE on this machine)"
                        + ("; the nodes do not attest to them (static keys)" if state.key_source == "static" else ""))

    agents = [h for h in layout.hosts if h.role == ROLE_NODE and h.domain in keyed]
    with _Phase(state, observer, "nodes", total=len(agents)) as phase:
        started = []
        control_pubs = [arg for h in controls for arg in ("--allow-sim", state.file("cp", f"{h.domain}.platform.pub"))]
        for host in agents:
            argv = [_tool("sealnet"), "node", "run", "--iface", UPLINK, "--netns", host.netns,
                    "--bundle", state.bundle, "--trust", state.authority_public]
            if state.key_source == "static":
                argv += ["--keys", key_files[host.domain]]
            else:
                argv += ["--control", cp_url[host.domain], "--sim-platform", node_platforms[host.domain],
                         "--sim-launch", _sim_launch(policy, host.domain), *control_pubs]
            # In the node's network namespace: it reaches its control plane from there. Each
            # simulated node is its own TEE, with its own runtime measurement log.
            runtime_log = state.file("nodes", host.name, "runtime-log.json")
            os.makedirs(os.path.dirname(runtime_log), mode=0o700, exist_ok=True)
            started.append(_start(state, "node", host, argv, in_netns=True, env={RUNTIME_LOG_ENV: runtime_log}))
        expected = {h.name: _directions(policy, h.domain, keyed) for h in agents}
        _wait_ready(started, _agent_ready(expected, {h.name: h.netns for h in agents}), observer, timeout,
                    "node agent")
        how = "attested (SIMULATED evidence) and keyed by their control planes" if state.key_source == "control" \
            else "keyed from static files"
        untrusted = [h.name for h in layout.hosts if h.role == ROLE_NODE and h.domain not in keyed]
        phase.detail = (f"{len(agents)} node agents loaded, {how}, enforcing"
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
    for root in (node.PIN_ROOT, node.STATE_DIR):
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
        for i, host in enumerate(hosts, start=1):
            if node.read_state(UPLINK, host.netns) is not None:
                try:
                    report.problems += node.unload(UPLINK, host.netns, open_sealed_flows=True)
                    report.unloaded += 1
                except node.NodeError as exc:
                    report.problems.append(str(exc))
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


def audit_keys(state: ClusterState) -> list[KeyFile]:
    """The pair keys an auditor of the wan needs to open what it captured:
    the static key files, or (attested keys) one release per TEE domain that
    the auditor obtains exactly as a node of that domain would, attesting
    from inside one of its nodes' namespaces with the domain's simulated node
    platform key."""
    keys_dir = state.file("keys")
    if state.key_source == "static":
        return [load_key_file(os.path.join(keys_dir, n)) for n in sorted(os.listdir(keys_dir))]
    assert state.layout is not None and state.bundle and state.authority_public
    with open(state.bundle, "rb") as fh:
        verified = load_bundle(fh.read(), load_public(state.authority_public))
    simulated = {d["name"]: d for d in verified.manifest.get("domains", [])}
    controls = {h.domain: h for h in state.layout.hosts if h.role == ROLE_CONTROL}
    trusted = set()
    for d in controls:
        path = state.file("cp", f"{d}.platform.pub")
        with open(path, "rb") as fh:
            trusted.add(sim.public_fingerprint(sim.load_public(fh.read(), path)))
    releases = []
    for domain, cp in sorted(controls.items()):
        launch = simulated[domain]["measurements"][0]
        platform = sim.load_platform(state.file("cp", f"{domain}.nodes.platform"), bytes.fromhex(launch[7:]))
        inside = state.layout.by_domain(domain, ROLE_NODE)[0].netns

        def fetch() -> KeyFile:
            release = asyncio.run(control_client.attest(
                f"http://{cp.address}:{cp.port}", domain=domain, manifest=verified.manifest,
                bundle_measurement=verified.measurement, attester=platform.attest,
                verifier=VerifierConfig(sim_platforms=frozenset(trusted))))
            return release.key_file()

        releases.append(run_in_netns(inside, fetch))
    return releases


def load(state_dir: str) -> ClusterState:
    state = ClusterState.load(state_dir)
    if state is None:
        raise ClusterError(f"{state_dir}: no cluster recorded here (sealnet cluster up ... --state {state_dir})")
    return state

