"""The genomics Dask pipeline across the cluster's namespaces: scheduler and
workers where the policy's workflow puts them, real data crossing the wan
namespace, the result checked against the same pipeline run in one process."""

from __future__ import annotations

import importlib
import secrets
import sys
from pathlib import Path

import pytest

from sealnet.compiler.frontend import load_policy
from sealnet.runtime import netns
from sealnet.runtime.cluster import topology

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("distributed", reason="the Dask demo needs `pip install -e '.[demo]'`")
sys.path.insert(0, str(ROOT / "scripts"))
genomics_dask = importlib.import_module("genomics_dask")


def _policy():
    policy, _ = load_policy(str(ROOT / "examples" / "genomics.policy"))
    assert policy is not None
    return policy


def test_stage_ports_come_from_the_policy() -> None:
    policy = _policy()
    assert [genomics_dask.stage_port(policy, s) for s in ("ingest", "align", "report")] == [7000, 7001, 7002]


def test_pipeline_maps_reads_back_to_their_origin() -> None:
    result = genomics_dask.local_pipeline(2, 200, 3)
    assert result["reads"] == 400 and result["correct"] >= 396
    assert sum(result["coverage"]) == result["aligned"]


def _wan_bytes(layout: topology.Layout, host: topology.Host) -> int:
    with netns.iproute(layout.wan_netns) as ipr:
        return int(ipr.link("get", index=host.wan_ifindex)[0].get("IFLA_STATS64")["tx_bytes"])


@pytest.mark.kernel
@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_pipeline_runs_across_domains(tmp_path: Path, tls: bool) -> None:
    policy = _policy()
    layout = topology.plan(policy, 2, "t" + secrets.token_hex(3))
    try:
        topology.build(layout)
        deployment = genomics_dask.deploy(layout, policy, tmp_path, tls=tls)
        try:
            lab = layout.by_domain("lab", topology.ROLE_NODE)
            before = sum(_wan_bytes(layout, h) for h in lab)
            result = deployment.run(samples=4, reads=500, timeout=60)
            assert result["checked"] is True, result
            assert deployment.scheduler.startswith("tls://" if tls else "tcp://")
            # The reference (120 kB) and the reads (4 x 500 x 104 B) reached the
            # lab through the wan namespace.
            assert sum(_wan_bytes(layout, h) for h in lab) - before > 300_000
        finally:
            deployment.stop()
    finally:
        topology.teardown(layout.cluster_id)
    assert topology.cluster_namespaces(layout.cluster_id) == []
