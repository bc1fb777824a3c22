"""`sealnet cluster` end to end: up, a sealed Dask workflow across the domains
with the wan capture audited, denied flows dropped and counted, faults in the
middle of the workflow, down leaving nothing; the CLI's refusals."""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from sealnet.compiler.frontend import load_policy
from sealnet.runtime import netns, node
from sealnet.runtime.cluster import capture, lifecycle, topology
from sealnet.runtime.cluster.state import ClusterState
from sealnet.runtime.node_agent import RUNTIME_LOG_ENV

ROOT = Path(__file__).resolve().parent.parent
POLICY = ROOT / "examples" / "genomics.policy"
SEALNET = str(Path(sys.executable).parent / "sealnet")


def _sealnet(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEALNET, *args], capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- refusals (no kernel needed)


def test_status_and_down_of_an_empty_state_directory(tmp_path: Path) -> None:
    proc = _sealnet("cluster", "status", "--state", str(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"sealnet: error: {tmp_path}: no cluster recorded here " \
                                  f"(sealnet cluster up ... --state {tmp_path})"
    proc = _sealnet("cluster", "down", "--state", str(tmp_path))
    assert proc.returncode == 0 and "0 namespaces removed" in proc.stdout


def test_up_refuses_a_broken_policy_and_changes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.policy"
    bad.write_text('policy "x" version 1\ndomain a { tee sim; nodes 198.18.0.0/24 }\nrule r: seal from a to nowhere\n')
    proc = _sealnet("cluster", "up", str(bad), "--state", str(tmp_path / "state"))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"sealnet: error: {bad}: the policy has errors")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "state").exists()


def test_up_refuses_more_nodes_than_a_domain_holds(tmp_path: Path) -> None:
    proc = _sealnet("cluster", "up", str(POLICY), "--nodes", "300", "--state", str(tmp_path / "s"))
    assert proc.returncode == 1 and "fewer than 300 nodes" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- the cluster


genomics_dask: Any = None


@pytest.fixture(params=["control"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ClusterState]:
    global genomics_dask
    pytest.importorskip("distributed", reason="needs the 'demo' extra")
    sys.path.insert(0, str(ROOT / "scripts"))
    genomics_dask = importlib.import_module("genomics_dask")
    state_dir = str(tmp_path / "cluster")
    try:
        proc = _sealnet("cluster", "up", str(POLICY), "--nodes", "2", "--state", state_dir, "--format", "json",
                        "--keys", request.param)
        assert proc.returncode == 0, proc.stderr
        up = json.loads(proc.stdout)
        assert list(up["phases_s"]) == ["bundle", "topology", "keys", "control planes", "nodes"]
        assert up["key_source"] == request.param
        state = ClusterState.load(state_dir)
        assert state is not None and state.complete
        yield state
    finally:
        state = ClusterState.load(state_dir)
        cluster_id = state.cluster_id if state else None
        proc = _sealnet("cluster", "down", "--state", state_dir)
        assert proc.returncode == 0, proc.stderr
        if cluster_id:
            # Nothing left: no namespace, no pin, no node state, no state directory.
            assert topology.cluster_namespaces(cluster_id) == []
            assert lifecycle.marked_processes(cluster_id) == []
            prefix = f"{topology.NAME_PREFIX}{cluster_id}-"
            for root in (node.PIN_ROOT, node.STATE_DIR):
                if os.path.isdir(root):
                    assert [n for n in os.listdir(root) if n.startswith(prefix)] == []
        assert not os.path.exists(state_dir)


def _connect(ns: str, address: str, port: int) -> str:
    def attempt() -> str:
        try:
            with socket.create_connection((address, port), timeout=1.0):
                return "connected"
        except OSError as exc:
            return type(exc).__name__

    return netns.run_in_netns(ns, attempt)


def _rules(state: ClusterState, host: str) -> dict[tuple[str, str], int]:
    proc = _sealnet("cluster", "status", "--state", state.directory, "--format", "json")
    doc = json.loads(proc.stdout)
    for h in doc["hosts"]:
        if h["name"] == host:
            assert "counters" in h["data_plane"], h["data_plane"]
            return {(r["direction"], r["name"]): r["packets"] for r in h["data_plane"]["counters"]["rules"]}
    raise KeyError(host)


def _policy():
    policy, _ = load_policy(str(POLICY))
    assert policy is not None
    return policy


@pytest.mark.kernel
def test_sealed_workflow_denied_flows_and_a_clean_wan(cluster: ClusterState, tmp_path: Path) -> None:
    layout = cluster.layout
    assert layout is not None
    policy = _policy()
    status = json.loads(_sealnet("cluster", "status", "--state", cluster.directory, "--format", "json").stdout)
    agents = [h for h in status["hosts"] if h["role"] == "node" and h["processes"]]
    assert len(agents) == 4 and all(p["running"] for h in agents for p in h["processes"])
    assert all(h["data_plane"]["sealing"] for h in agents)
    # One control plane per TEE domain, serving on the policy's address with simulated evidence.
    controls = [h for h in status["hosts"] if h["role"] == "control"]
    assert [h["name"] for h in controls] == ["hospital-cp", "lab-cp"]
    assert all(p["role"] == "controlplane" and p["running"] for h in controls for p in h["processes"])
    for h in controls:
        assert "(SIMULATED evidence accepted)" in Path(h["processes"][0]["log"]).read_text()
        assert h["control_plane"]["domain"] == h["domain"] and h["control_plane"]["simulated"] is True
    assert all(not h["processes"] for h in status["hosts"] if h["domain"] == "public")

    wan = capture.WanCapture(layout, str(tmp_path / "wan.pcap"))
    deployment = genomics_dask.deploy(layout, policy, tmp_path / "dask")
    try:
        result = deployment.run(samples=4, reads=500, timeout=90)
    finally:
        deployment.stop()
        wan.stop()
    assert result["checked"] is True, result

    keys = lifecycle.audit_keys(cluster)
    reference = genomics_dask.make_reference(7)
    markers = [reference[i : i + 24] for i in range(0, len(reference) - 24, 997)]
    audit = capture.audit(capture.read_pcap(wan.path), policy, keys, markers)
    tee = {"hospital->lab", "lab->hospital"}
    assert audit.total("sealed", tee) > 100
    assert audit.total("plaintext", tee) == audit.total("empty", tee) == audit.total("forged", tee) == 0
    assert audit.raw_marker_hits == 0 and audit.opened_marker_hits > 0

    # A public node (no TEE, no agent) cannot reach the hospital's scheduler:
    # the hospital node drops it on ingress under the default rule.
    hospital = layout.host("hospital-n1")
    before = _rules(cluster, hospital.name)
    assert _connect(layout.host("public-n1").netns, hospital.address, 7002) != "connected"
    after = _rules(cluster, hospital.name)
    assert after[("ingress", "default")] > before.get(("ingress", "default"), 0)
    # The lab may not open the hospital's ssh: dropped on the lab's egress.
    lab = layout.host("lab-n1")
    before = _rules(cluster, lab.name)
    assert _connect(lab.netns, hospital.address, 22) != "connected"
    assert _rules(cluster, lab.name)[("egress", "default")] > before.get(("egress", "default"), 0)


@pytest.mark.kernel
@pytest.mark.parametrize("cluster", ["static"], indirect=True)
def test_faults_mid_workflow_fail_closed_and_recover(cluster: ClusterState, tmp_path: Path) -> None:
    """kill -9 of a lab node's agent: its data plane keeps enforcing with the
    keys already installed, so the workflow completes. The wan path to a lab
    node cut for 3.5 s in the middle of a run: TCP waits, nothing is sent in
    the clear, the run completes with the right result."""
    layout = cluster.layout
    assert layout is not None
    policy = _policy()
    agent = next(p for p in cluster.processes if p.host == "lab-n1")
    os.kill(agent.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while lifecycle.alive(agent) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lifecycle.alive(agent)
    assert node.read_state("eth0", layout.host("lab-n1").netns).sealing

    wan = capture.WanCapture(layout, str(tmp_path / "wan.pcap"))
    deployment = genomics_dask.deploy(layout, policy, tmp_path / "dask")
    lab2 = layout.host("lab-n2")
    cut = threading.Event()

    def cut_link() -> None:
        # The wan drops everything addressed to lab-n2 for 3.5 s (a blackhole
        # route: silent loss, like a cut link), then routes it again.
        time.sleep(1.5)  # the client starts, connects and submits while the path is cut
        route = {"dst": f"{lab2.address}/32"}
        with netns.iproute(layout.wan_netns) as ipr:
            ipr.route("replace", **route, type="blackhole")
            cut.set()
            time.sleep(3.5)
            ipr.route("replace", **route, oif=lab2.wan_ifindex, scope=253)

    cutter = threading.Thread(target=cut_link, daemon=True)
    try:
        # A first run with every worker registered, then the cut in the middle of a second.
        assert deployment.run(samples=2, reads=200, timeout=60, check=False)["samples"] == 2
        cutter.start()
        result = deployment.run(samples=6, reads=1500, timeout=120)
    finally:
        cutter.join(10)
        deployment.stop()
        wan.stop()
    assert cut.is_set()
    assert result["checked"] is True, result
    keys = lifecycle.audit_keys(cluster)
    audit = capture.audit(capture.read_pcap(wan.path), policy, keys)
    tee = {"hospital->lab", "lab->hospital"}
    assert audit.total("sealed", tee) > 100
    assert audit.total("plaintext", tee) == audit.total("empty", tee) == audit.total("forged", tee) == 0
    # status reports the dead agent and fails.
    proc = _sealnet("cluster", "status", "--state", cluster.directory)
    assert proc.returncode == 1 and "NOT RUNNING" in proc.stdout


@pytest.mark.kernel
def test_control_plane_killed_and_a_node_with_another_bundle(cluster: ClusterState, tmp_path: Path) -> None:
    """kill -9 of the lab's control plane: nodes keep the keys it released,
    the workflow completes sealed. A hospital node restarted on another
    bundle (signed by the same authority, another policy version) fails MAKE
    with its control plane (bundle_measurement) and holds no keys: its seal
    traffic is dropped."""
    layout = cluster.layout
    assert layout is not None and cluster.bundle
    policy = _policy()
    lab_cp = next(p for p in cluster.processes if p.host == "lab-cp")
    os.kill(lab_cp.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while lifecycle.alive(lab_cp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lifecycle.alive(lab_cp)

    # Another bundle for hospital-n2: the same policy, one more rule, same authority.
    other_policy = tmp_path / "other.policy"
    other_policy.write_text(Path(cluster.directory, "policy.sim.policy").read_text().replace(
        "default deny", "rule extra: allow tcp from hospital to hospital port 9999\ndefault deny"))
    other_bundle = tmp_path / "other.snb"
    proc = subprocess.run([str(Path(sys.executable).parent / "policyc"), "compile", str(other_policy), "-o",
                           str(other_bundle), "--sign-key", cluster.file("authority.key")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    agent = next(p for p in cluster.processes if p.host == "hospital-n2")
    lifecycle.stop(agent)
    host = layout.host("hospital-n2")
    node.unload("eth0", host.netns, open_sealed_flows=True)
    argv = [a if a != cluster.bundle else str(other_bundle) for a in agent.argv]
    log = tmp_path / "swapped.log"
    with open(log, "wb") as out:
        swapped = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True, env={
            **os.environ, RUNTIME_LOG_ENV: cluster.file("nodes", "hospital-n2", "runtime-log.json")})
    try:
        deadline = time.monotonic() + 60
        while not (b"control_plane_refused" in log.read_bytes() and b'"loaded"' in log.read_bytes()):
            assert swapped.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        refused = [e for e in events if e["event"] == "control_plane_refused"]
        assert refused and refused[0]["code"] == "bundle_measurement", events
        state = node.read_state("eth0", host.netns)
        assert state is not None and not state.epochs  # loaded, enforcing, and keyless: seal traffic drops

        deployment = genomics_dask.deploy(layout, policy, tmp_path / "dask")
        try:
            # Without hospital-n2 (no keys: its workers could not talk to the lab),
            # the pipeline runs on the other nodes, with the lab's control plane dead.
            deployment.ingest_workers = deployment.ingest_workers[:1]
            result = deployment.run(samples=4, reads=500, timeout=90)
        finally:
            deployment.stop()
        assert result["checked"] is True, result
    finally:
        swapped.terminate()
        swapped.wait(10)


@pytest.mark.kernel
def test_down_after_up_was_killed(tmp_path: Path) -> None:
    """kill -9 of `cluster up` while it starts the node agents: what it had
    started is recorded, and `down` removes all of it."""
    state_dir = tmp_path / "cluster"
    up = subprocess.Popen([SEALNET, "cluster", "up", str(POLICY), "--nodes", "2", "--state", str(state_dir),
                           "--keys", "static"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    state = None
    try:
        while time.monotonic() < deadline:
            state = ClusterState.load(str(state_dir)) if (state_dir / "cluster.json").exists() else None
            if state is not None and any(p.role == "node" for p in state.processes):
                break
            assert up.poll() is None, "cluster up ended before starting its nodes"
            time.sleep(0.02)
        os.kill(up.pid, signal.SIGKILL)
        up.wait(10)
        state = ClusterState.load(str(state_dir))
        assert state is not None and not state.complete and topology.cluster_namespaces(state.cluster_id)
    finally:
        proc = _sealnet("cluster", "down", "--state", str(state_dir))
    assert proc.returncode == 0, proc.stderr
    assert state is not None
    assert topology.cluster_namespaces(state.cluster_id) == []
    assert not any(lifecycle.alive(p) for p in state.processes)
    assert lifecycle.marked_processes(state.cluster_id) == []  # nor one started but not yet recorded
    prefix = f"{topology.NAME_PREFIX}{state.cluster_id}-"
    for root in (node.PIN_ROOT, node.STATE_DIR):
        if os.path.isdir(root):
            assert [n for n in os.listdir(root) if n.startswith(prefix)] == []
    assert not state_dir.exists()
    assert _sealnet("cluster", "down", "--state", str(state_dir)).returncode == 0  # idempotent
