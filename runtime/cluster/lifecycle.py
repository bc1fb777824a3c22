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

import errno
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

from sealnet.compiler.frontend import load_policy
from sealnet.compiler.ir import Policy, TeeKind
from sealnet.contracts.errors import OsCallError, UserError
from sealnet.runtime import node
from sealnet.runtime.attest.sim import SimPlatform
from sealnet.runtime.cluster import topology
from sealnet.runtime.cluster.state import ClusterState, Process
from sealnet.runtime.cluster.topology import ROLE_CONTROL, ROLE_NODE, UPLINK, Host
from sealnet.runtime.seal_keys import format_key_file
from sealnet.runtime.seal_wire import PAIR_KEY_LEN

DEFAULT_STATE_DIR = "/run/sealnet-cluster"
KEY_SOURCES = ("static",)
AGENT_READY_EVENTS = ("loaded", "adopted", "keys_installed")  # the agent loaded with its keys: enforcing and sealing
STOP_SECONDS = 10.0
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


_NETNS_EXEC = ("ip", "netns", "exec")


def _start(state: ClusterState, role: str, host: Host, argv: list[str], *, in_netns: bool = False) -> Process:
    """Start `argv`, inside the host's namespace when `in_netns`, and record it."""
    logs = state.file("logs")
    os.makedirs(logs, exist_ok=True)
    log = os.path.join(logs, f"{role}-{host.name}.log")
    spawn = [*_NETNS_EXEC, host.netns, *argv] if in_netns else argv
    with open(log, "ab") as out:
        proc = subprocess.Popen(spawn, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    record = Process(role, host.name, proc.pid, spawn, log)
    state.processes.append(record)
    state.save()
    return record


def _ours(process: Process) -> bool:
    """The pid still runs the command we started (pids are reused). A script's
    interpreter comes first in /proc/PID/cmdline, so compare the tail; a
    command started in a namespace is `ip netns exec NS argv` until ip execs it."""
    wanted = [process.argv]
    if process.argv[: len(_NETNS_EXEC)] == list(_NETNS_EXEC):
        wanted.append(process.argv[len(_NETNS_EXEC) + 1 :])
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


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(process: Process, timeout: float = STOP_SECONDS) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True when it was running."""
    if not alive(process):
        return False
    os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(process.pid)
        if not alive(process):
            return True
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    while alive(process):
        _reap(process.pid)
        time.sleep(0.02)
    return True


def _log_events(path: str) -> Iterator[dict[str, Any]]:
    try:
        with open(path, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


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


def _sim_launch(policy: Policy, domain: str) -> str:
    """The launch measurement a simulated TEE reports: the first one the
    policy accepts for the domain (a TEE launched from an approved image),
    else a fixed, recognisable stand-in."""
    accepted = policy.domain(domain).measurements
    return accepted[0] if accepted else SIM_LAUNCH


def _start_control_planes(state: ClusterState, policy: Policy, controls: list[Host], observer: Observer,
                          timeout: float) -> None:
    """`sealnet controlplane serve` per TEE domain, in its namespace, with a
    simulated platform key each (as `sealnet attest sim-keygen` makes them);
    every control plane accepts the others' simulated evidence and knows
    them as federation peers."""
    cp_dir = state.file("cp")
    os.makedirs(cp_dir, mode=0o700, exist_ok=True)
    platform = {h.domain: os.path.join(cp_dir, f"{h.domain}.platform") for h in controls}
    for path in platform.values():
        # What `sealnet attest sim-keygen` writes, without a process per key.
        key = SimPlatform.generate(bytes(48))
        key.save(path)
        with open(path + ".pub", "wb") as fh:
            fh.write(key.public_pem())
    allow = [arg for path in platform.values() for arg in ("--allow-sim", path + ".pub")]
    assert state.bundle and state.authority_public
    started = []
    for host in controls:
        peers = [arg for h in controls if h is not host for arg in ("--peer", f"{h.domain}=http://{h.address}:{h.port}")]
        argv = [_tool("sealnet"), "controlplane", "serve", "--bundle", state.bundle, "--trust", state.authority_public,
                "--domain", host.domain, "--db", os.path.join(cp_dir, f"{host.domain}.db"),
                "--listen", f"{host.address}:{host.port}", "--sim-platform", platform[host.domain],
                "--sim-launch", _sim_launch(policy, host.domain), *allow, *peers]
        started.append(_start(state, "controlplane", host, argv, in_netns=True))
    _wait_ready(started, _control_plane_ready, observer, timeout, "control plane")


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
            elif not alive(process):
                raise ClusterError(f"{what} of {process.host} exited: {_last_line(process.log)}")
        observer.advanced(len(started) - len(pending))
        if pending and time.monotonic() > deadline:
            raise ClusterError(f"{what} of {pending[0].host} not ready after {timeout:.0f} s: "
                               f"{_last_line(pending[0].log)}")
        if pending:
            time.sleep(0.05)


def _agent_ready(process: Process) -> bool:
    return any(e.get("event") in AGENT_READY_EVENTS for e in _log_events(process.log))


def up(policy_path: str, nodes_per_domain: int, state_dir: str, *, key_source: str = "static",
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
        argv = [_tool("policyc"), "compile", state.policy, "-o", state.bundle, "--sign-key", authority,
                "--format", "json"]
        out = json.loads(_run(argv, "policyc compile"))
        phase.detail = f"{policy.name} version {policy.version}, measurement {out['measurement'][:23]}..."

    with _Phase(state, observer, "topology", total=len(layout.hosts)) as phase:
        topology.build(layout, lambda done, total: observer.advanced(done))
        phase.detail = f"{len(layout.hosts)} namespaces behind the wan namespace {layout.wan_netns}"

    controls = [h for h in layout.hosts if h.role == ROLE_CONTROL]
    with _Phase(state, observer, "control planes", total=len(controls)) as phase:
        _start_control_planes(state, policy, controls, observer, timeout)
        phase.detail = (f"{len(controls)} serving with SIMULATED evidence (no TEE on this machine); "
                        f"the node agents do not attest to them yet")

    with _Phase(state, observer, "keys") as phase:
        key_files = write_static_keys(state, policy)
        phase.detail = f"static key files for {', '.join(key_files)} (no attested release)"

    agents = [h for h in layout.hosts if h.role == ROLE_NODE and h.domain in key_files]
    with _Phase(state, observer, "nodes", total=len(agents)) as phase:
        started = []
        for host in agents:
            argv = [_tool("sealnet"), "node", "run", "--iface", UPLINK, "--netns", host.netns,
                    "--bundle", state.bundle, "--trust", state.authority_public, "--keys", key_files[host.domain]]
            started.append(_start(state, "node", host, argv))
        _wait_ready(started, _agent_ready, observer, timeout, "node agent")
        untrusted = [h.name for h in layout.hosts if h.role == ROLE_NODE and h.domain not in key_files]
        phase.detail = (f"{len(agents)} node agents loaded, keyed and enforcing"
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


_OWNED = ("cluster.json", "authority.key", "authority.key.pub", "bundle.snb", "keys", "cp", "logs")


def down(state_dir: str, observer: Observer | None = None, *, keep_logs: bool = False) -> DownReport:
    """Stop the cluster's processes, unload its data planes, remove its
    namespaces, pins, state and files. Idempotent."""
    observer = observer or Quiet()
    report = DownReport()
    state = ClusterState.load(state_dir)
    if state is None:
        return report
    with _Phase(state, observer, "stop processes", total=len(state.processes)) as phase:
        for i, process in enumerate(reversed(state.processes), start=1):
            report.stopped += stop(process)
            observer.advanced(i)
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


def load(state_dir: str) -> ClusterState:
    state = ClusterState.load(state_dir)
    if state is None:
        raise ClusterError(f"{state_dir}: no cluster recorded here (sealnet cluster up ... --state {state_dir})")
    return state

