"""One `sealnet node run` serving several nodes (runtime/node_group.py): each node attests on its own to
its domain's control plane and is keyed on its own; one with another bundle gets no keys while the
others of the same process do; sealed traffic flows between the two agents' nodes; kill -9 of an agent
leaves its nodes enforcing (fail closed) and a restarted agent adopts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cp_lab import LAUNCH_TEXT
from sealnet.compiler.cli import main as policyc
from sealnet.runtime.netns import run_in_netns
from testbed import received, send_udp

pytestmark = pytest.mark.kernel

SEALNET = str(Path(sys.executable).with_name("sealnet"))
# Three veth pairs between namespace A (nodes of domain a) and namespace B (nodes of domain b).
A_NODES = ("198.18.0.1", "198.18.0.5", "198.18.0.9")
B_NODES = ("198.18.0.2", "198.18.0.6", "198.18.0.10")
POLICY = f"""policy "group" version 1
domain a {{ tee sim; nodes {', '.join(a + '/32' for a in A_NODES)}; measurement "{LAUNCH_TEXT}"; control 127.0.0.1:7443 }}
domain b {{ tee sim; nodes {', '.join(b + '/32' for b in B_NODES)}; measurement "{LAUNCH_TEXT}"; control 127.0.0.1:7444 }}
rule ab: seal udp from a to b port 7000
rule ba: seal udp from b to a port 7000
rule other: allow udp from a to b port 7001
default deny
"""
# The same name, version and authority, another measurement: its control plane refuses it.
OTHER = POLICY.replace("port 7001", "port 7002")


def _event(line: str) -> dict:
    try:
        doc = json.loads(line)
        return doc if isinstance(doc, dict) else {}
    except ValueError:
        return {}


def _events(log: Path) -> list[dict]:
    return [e for e in map(_event, log.read_text().splitlines()) if e]


def _wait(predicate, what: str, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def _exchange(ns_from: str, ns_to: str, dst: str, port: int = 7000, count: int = 10) -> list[bytes]:
    payloads = [b"group %d" % i for i in range(count)]
    return received(ns_to, "0.0.0.0", port, lambda: run_in_netns(ns_from, send_udp, dst, port, payloads), count,
                    timeout=1.5)


def _audit(db: Path) -> list[dict]:
    out = subprocess.run([SEALNET, "controlplane", "audit", "--db", str(db), "--format", "json"],
                         capture_output=True, text=True)
    return json.loads(out.stdout)["rows"] if out.returncode == 0 else []


def test_one_agent_serves_several_nodes_each_attested_on_its_own(topology, tmp_path) -> None:
    d = tmp_path
    ns_a, ns_b = topology.netns("a"), topology.netns("b")
    veths = [topology.veth(ns_a, ns_b, f"{a}/30", f"{b}/30") for a, b in zip(A_NODES, B_NODES)]
    (d / "p.policy").write_text(POLICY)
    (d / "other.policy").write_text(OTHER)
    assert policyc(["keygen", str(d / "auth")]) == 0
    for name in ("p", "other"):
        assert policyc(["compile", str(d / f"{name}.policy"), "-o", str(d / f"{name}.bundle"),
                        "--sign-key", str(d / "auth")]) == 0
    for name in ("cpa", "cpb", "node"):
        subprocess.run([SEALNET, "attest", "sim-keygen", str(d / name)], check=True, capture_output=True)
    trust = [x for n in ("cpa", "cpb", "node") for x in ("--allow-sim", str(d / f"{n}.pub"))]
    env = {**os.environ, "SEALNET_STATE_DIR": str(d / "run"), "SEALNET_LIB_DIR": str(d / "lib")}
    procs: list[subprocess.Popen] = []
    agents: dict[str, subprocess.Popen] = {}

    def serve(domain: str, *extra: str) -> str:
        p = subprocess.Popen([SEALNET, "controlplane", "serve", "--bundle", str(d / "p.bundle"), "--trust",
                              str(d / "auth.pub"), "--domain", domain, "--db", str(d / f"{domain}.db"), "--listen",
                              "127.0.0.1:0", "--sim-platform", str(d / f"cp{domain}"), "--sim-launch", LAUNCH_TEXT,
                              "--epoch-seconds", "120", *trust, *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(p)
        deadline = time.monotonic() + 60
        while not (line := p.stdout.readline()).startswith("serving"):  # type: ignore[union-attr]
            assert p.poll() is None and time.monotonic() < deadline, "control plane did not start"
        return "http://" + line.split(" on ")[1].split(" ")[0].rstrip(";")

    def agent(name: str, url: str, nodes: list[dict]) -> Path:
        node_list = d / f"{name}.nodes.json"
        node_list.write_text(json.dumps({"nodes": nodes}))
        log = d / f"{name}.log"
        with open(log, "a") as out:
            agents[name] = subprocess.Popen(
                [SEALNET, "node", "run", "--node-list", str(node_list), "--bundle", str(d / "p.bundle"), "--trust",
                 str(d / "auth.pub"), "--control", url, "--sim-platform", str(d / "node"), "--sim-launch", LAUNCH_TEXT,
                 *trust], stdout=out, stderr=out, env=env)
        return log

    def node_status(iface: str, ns: str) -> dict:
        out = subprocess.run([SEALNET, "node", "status", "--iface", iface, "--netns", ns, "--format", "json"],
                             capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    a_nodes = [{"iface": v.a, "netns": ns_a, "runtime_log": str(d / f"rtlog-{v.a}.json")} for v in veths]
    a_nodes[2]["bundle"] = str(d / "other.bundle")  # the third node of agent A runs another bundle
    b_nodes = [{"iface": v.b, "netns": ns_b, "runtime_log": str(d / f"rtlog-{v.b}.json")} for v in veths]
    try:
        url_a = serve("a")
        url_b = serve("b", "--peer", f"a={url_a}")
        _wait(lambda: any(r["event"] == "federate" and r["code"] == "ok" for r in _audit(d / "b.db")), "federation")
        log_a, log_b = agent("A", url_a, a_nodes), agent("B", url_b, b_nodes)
        for log in (log_a, log_b):
            _wait(lambda: any(e["event"] == "nodes_started" for e in _events(log)), f"{log} started")
        events_a = _events(log_a)
        started = next(e for e in events_a if e["event"] == "nodes_started")
        assert started["nodes"] == 3 and started["failed"] == 0
        assert len({e["pid"] for e in events_a if "pid" in e}) == 1  # one process for the three
        released = {e["iface"] for e in events_a if e["event"] == "control_plane_release"}
        refused = [e for e in events_a if e["event"] == "control_plane_refused"]
        assert released == {veths[0].a, veths[1].a}
        # (retried every 5 s: the same refusal may be logged again by now)
        assert {(e["iface"], e["code"]) for e in refused} == {(veths[2].a, "bundle_measurement")}

        # Each node its own state, pins, sender (its address) and keys; the refused one enforcing without keys.
        for v, address in zip(veths, A_NODES):
            st = node_status(v.a, ns_a)
            assert st["enforcing"] and st["pin_dir"].startswith(f"/sys/fs/bpf/sealnet/{ns_a}--{v.a}/")
            if v is veths[2]:
                assert not st["epochs"] and st["sender"] is None
            else:
                assert st["epochs"] and st["sender"] == int.from_bytes(bytes(map(int, address.split("."))), "big")
        releases = [r for r in _audit(d / "a.db") if r["event"] == "release" and r["role"] == "node"]
        assert len(releases) >= 2  # a MAKE exchange that released per keyed node (more after a half period)
        assert any(r["event"] == "refuse" and r["code"] == "bundle_measurement" for r in _audit(d / "a.db"))

        plain = sorted(b"group %d" % i for i in range(10))
        for v in veths[:2]:
            assert sorted(_exchange(ns_a, ns_b, v.ip_b)) == plain  # sealed by a's node, opened by b's
            assert sorted(_exchange(ns_b, ns_a, v.ip_a)) == plain
        assert _exchange(ns_a, ns_b, veths[2].ip_b) == []  # no keys: dropped, never sent in clear

        # kill -9 of agent A: its nodes keep enforcing with the keys they hold (the pins hold the programs).
        agents["A"].kill()
        agents["A"].wait(10)
        assert sorted(_exchange(ns_a, ns_b, veths[0].ip_b)) == plain
        assert _exchange(ns_a, ns_b, veths[2].ip_b) == []
        programs = {v.a: node_status(v.a, ns_a)["program_ids"] for v in veths}
        # A restarted agent adopts all three: same programs, no reload, and the keyed ones keep their keys.
        before = len(_events(log_a))
        agent("A", url_a, a_nodes)
        _wait(lambda: any(e["event"] == "nodes_started" for e in _events(log_a)[before:]), "A restarted")
        again = _events(log_a)[before:]
        assert {e["iface"] for e in again if e["event"] == "adopted" and e["enforcing"]} == {v.a for v in veths}
        assert not [e for e in again if e["event"] == "loaded"]
        assert {v.a: node_status(v.a, ns_a)["program_ids"] for v in veths} == programs
        assert sorted(_exchange(ns_b, ns_a, veths[1].ip_a)) == plain
    finally:
        for p in [*agents.values(), *reversed(procs)]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
        for v in veths:
            for iface, ns in ((v.a, ns_a), (v.b, ns_b)):
                subprocess.run([SEALNET, "node", "unload", "--iface", iface, "--netns", ns, "--open-sealed-flows"],
                               capture_output=True, env=env)
                assert not os.path.exists(f"/sys/fs/bpf/sealnet/{ns}--{iface}")


def test_node_list_errors_are_one_line(tmp_path) -> None:
    bad = {"not json": "{", "no nodes": "{\"nodes\": []}", "unknown field": "{\"nodes\": [{\"iface\": \"x\", \"y\": 1}]}",
           "twice": "{\"nodes\": [{\"iface\": \"x\"}, {\"iface\": \"x\"}]}"}
    for what, text in bad.items():
        path = tmp_path / "nodes.json"
        path.write_text(text)
        out = subprocess.run([SEALNET, "node", "run", "--node-list", str(path)], capture_output=True, text=True)
        assert out.returncode == 1, (what, out)
        assert len(out.stderr.strip().splitlines()) == 1 and str(path) in out.stderr, (what, out.stderr)
    out = subprocess.run([SEALNET, "node", "run", "--iface", "a", "--iface", "b", "--netns", "x", "--netns", "y",
                          "--netns", "z"], capture_output=True, text=True)
    assert out.returncode == 1 and "--netns" in out.stderr and len(out.stderr.strip().splitlines()) == 1
