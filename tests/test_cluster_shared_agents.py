"""`sealnet cluster up --nodes-per-agent K`: one `sealnet node run` process serves several nodes of its
domain; every node attested and keyed on its own, sealed traffic between the domains' nodes, kill -9 of
a shared agent leaves its nodes enforcing, `down` leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sealnet.runtime import netns, node
from sealnet.runtime.cluster import lifecycle, topology
from sealnet.runtime.cluster.state import ClusterState
from testbed import received, send_udp

pytestmark = pytest.mark.kernel

SEALNET = str(Path(sys.executable).parent / "sealnet")
POLICY = """policy "shared" version 1
domain alpha { tee sev-snp; nodes 198.18.16.0/28 }
domain beta  { tee tdx;     nodes 198.18.32.0/28 }
rule ab: seal udp from alpha to beta port 7000
rule ba: seal udp from beta to alpha port 7000
default deny
"""


def _sealnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SEALNET, *args], capture_output=True, text=True, timeout=300)


def _exchange(src: str, dst_ns: str, dst: str, count: int = 10) -> list[bytes]:
    payloads = [b"shared %d" % i for i in range(count)]
    return received(dst_ns, "0.0.0.0", 7000, lambda: netns.run_in_netns(src, send_udp, dst, 7000, payloads), count,
                    timeout=1.5)


def test_shared_agents_attest_each_node_and_fail_closed(tmp_path: Path) -> None:
    (tmp_path / "p.policy").write_text(POLICY)
    state_dir = str(tmp_path / "cluster")
    cluster_id = None
    try:
        proc = _sealnet("cluster", "up", str(tmp_path / "p.policy"), "--nodes", "3", "--nodes-per-agent", "3",
                        "--state", state_dir, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        state = ClusterState.load(state_dir)
        assert state is not None and state.layout is not None
        cluster_id = state.cluster_id
        agents = [p for p in state.processes if p.role == "node"]
        assert len(agents) == 2 and all(len(p.hosts) == 3 for p in agents)  # one agent per domain
        doc = json.loads(_sealnet("cluster", "status", "--state", state_dir, "--format", "json").stdout)
        nodes = [h for h in doc["hosts"] if h["role"] == "node"]
        assert len(nodes) == 6
        for h in nodes:
            assert [p["running"] for p in h["processes"]] == [True]
            assert h["data_plane"]["enforcing"] and h["data_plane"]["epochs"], h
        # Six MAKE exchanges, one per node, each released on its own (the agents' logs).
        releases = [json.loads(line) for p in agents for line in Path(p.log).read_text().splitlines()
                    if '"control_plane_release"' in line]
        assert len(releases) == 6 and {r["netns"] for r in releases} == {h["netns"] for h in nodes}

        a1, b3 = state.layout.host("alpha-n1"), state.layout.host("beta-n3")
        plain = sorted(b"shared %d" % i for i in range(10))
        assert sorted(_exchange(a1.netns, b3.netns, b3.address)) == plain
        assert sorted(_exchange(b3.netns, a1.netns, a1.address)) == plain

        alpha_agent = next(p for p in agents if "alpha-n1" in p.hosts)
        os.kill(alpha_agent.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while lifecycle.alive(alpha_agent) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not lifecycle.alive(alpha_agent)
        for name in alpha_agent.hosts:  # every node of the dead agent still enforcing, keyed
            st = node.read_state("eth0", state.layout.host(name).netns)
            assert st is not None and st.sealing and st.epochs
            assert node.attached_program_ids("eth0", state.layout.host(name).netns) == st.program_ids
        assert sorted(_exchange(a1.netns, b3.netns, b3.address)) == plain
        status = _sealnet("cluster", "status", "--state", state_dir)
        assert status.returncode == 1 and status.stdout.count("NOT RUNNING") == 3
    finally:
        proc = _sealnet("cluster", "down", "--state", state_dir)
        assert proc.returncode == 0, proc.stderr
        if cluster_id:
            assert topology.cluster_namespaces(cluster_id) == []
            assert lifecycle.marked_processes(cluster_id) == []
            prefix = f"{topology.NAME_PREFIX}{cluster_id}-"
            for root in (node.PIN_ROOT, node.STATE_DIR, os.path.join(node.DURABLE_DIR, "replay")):
                if os.path.isdir(root):
                    assert [n for n in os.listdir(root) if n.startswith(prefix)] == []
        assert not os.path.exists(state_dir)


def test_nodes_per_agent_must_be_positive(tmp_path: Path) -> None:
    (tmp_path / "p.policy").write_text(POLICY)
    proc = _sealnet("cluster", "up", str(tmp_path / "p.policy"), "--nodes-per-agent", "0", "--state",
                    str(tmp_path / "s"))
    assert proc.returncode == 1 and "--nodes-per-agent" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "s").exists()
