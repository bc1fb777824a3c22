"""`sealnet node run --control URL`: a node agent on a veth attests to a real control plane process,
installs the released keys, and a node whose launch measurement is not accepted gets none."""

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
POLICY = f"""policy "cpnode" version 1
domain a {{ tee sim; nodes 198.18.0.1/32; measurement "{LAUNCH_TEXT}"; control 127.0.0.1:7443 }}
domain b {{ tee sim; nodes 198.18.0.2/32; measurement "{LAUNCH_TEXT}" }}
rule ab: seal udp from a to b port 7000
rule ba: seal udp from b to a port 7000
default deny
"""


def _wait_line(proc: subprocess.Popen, stream: str, predicate, timeout: float = 60.0) -> list[str]:  # type: ignore[no-untyped-def]
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    pipe = getattr(proc, stream)
    while time.monotonic() < deadline:
        line = pipe.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        if predicate(line):
            return lines
    raise AssertionError(f"not seen within {timeout} s: {''.join(lines)}")


def _event(line: str) -> str:
    try:
        return str(json.loads(line).get("event"))
    except ValueError:
        return ""


@pytest.mark.parametrize("accepted", [True, False])
def test_node_run_takes_its_keys_from_the_control_plane(topology, tmp_path, accepted: bool) -> None:
    ns_a, _ns_b, veth = topology.pair("198.18.0.0/30")
    d = tmp_path
    (d / "p.policy").write_text(POLICY)
    assert policyc(["keygen", str(d / "auth")]) == 0
    assert policyc(["compile", str(d / "p.policy"), "-o", str(d / "p.bundle"), "--sign-key", str(d / "auth")]) == 0
    for name in ("cp", "node"):
        subprocess.run([SEALNET, "attest", "sim-keygen", str(d / name)], check=True, capture_output=True)
    env = {**os.environ, "SEALNET_STATE_DIR": str(d / "run"), "SEALNET_LIB_DIR": str(d / "lib")}
    cp = subprocess.Popen([SEALNET, "controlplane", "serve", "--bundle", str(d / "p.bundle"), "--trust",
                           str(d / "auth.pub"), "--domain", "a", "--db", str(d / "cp.db"), "--listen", "127.0.0.1:0",
                           "--sim-platform", str(d / "cp"), "--sim-launch", LAUNCH_TEXT,
                           "--allow-sim", str(d / "node.pub")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    agent = None
    try:
        line = _wait_line(cp, "stdout", lambda s: s.startswith("serving"))[-1]
        url = "http://" + line.split(" on ")[1].split(" ")[0].rstrip(";")
        launch = LAUNCH_TEXT if accepted else "sha384:" + "0" * 96
        agent = subprocess.Popen([SEALNET, "node", "run", "--iface", veth.a, "--netns", ns_a, "--bundle",
                                  str(d / "p.bundle"), "--trust", str(d / "auth.pub"), "--control", url,
                                  "--sim-platform", str(d / "node"), "--sim-launch", launch,
                                  "--allow-sim", str(d / "cp.pub")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        if accepted:
            lines = _wait_line(agent, "stderr", lambda s: _event(s) == "loaded")
            assert any(_event(x) == "control_plane_release" for x in lines)
            status = subprocess.run([SEALNET, "node", "status", "--iface", veth.a, "--netns", ns_a, "--format",
                                     "json"], capture_output=True, text=True, env=env)
            assert status.returncode == 0, status.stderr
            doc = json.loads(status.stdout)
            assert doc["sealing"] and doc["epochs"], doc
        else:
            lines = _wait_line(agent, "stderr", lambda s: _event(s) == "loaded")
            refused = [json.loads(x) for x in lines if _event(x) == "control_plane_refused"]
            assert refused and refused[0]["code"] == "launch_measurement"
            status = json.loads(subprocess.run([SEALNET, "node", "status", "--iface", veth.a, "--netns", ns_a,
                                                "--format", "json"], capture_output=True, text=True, env=env).stdout)
            assert not status.get("epochs"), status  # loaded and enforcing, but no key: seal traffic drops
        audit = json.loads(subprocess.run([SEALNET, "controlplane", "audit", "--db", str(d / "cp.db"), "--format",
                                           "json"], capture_output=True, text=True).stdout)
        events = [(r["event"], r["code"]) for r in audit["rows"] if r["role"] == "node"]
        assert (("release", "ok") in events) == accepted
        assert (("refuse", "launch_measurement") in events) == (not accepted)
    finally:
        if agent is not None:
            agent.send_signal(signal.SIGTERM)
            agent.wait(30)
            out = subprocess.run([SEALNET, "node", "unload", "--iface", veth.a, "--netns", ns_a,
                                  "--open-sealed-flows"], capture_output=True, text=True, env=env)
            assert out.returncode == 0, out.stderr
            assert not os.path.exists(f"/sys/fs/bpf/sealnet/{ns_a}--{veth.a}")
        cp.send_signal(signal.SIGTERM)
        cp.wait(30)


FEDERATED = POLICY.replace('measurement "%s" }' % LAUNCH_TEXT, 'measurement "%s"; control 127.0.0.1:7444 }' % LAUNCH_TEXT)


def _exchange(ns_from: str, ns_to: str, dst: str, count: int = 20) -> list[bytes]:
    """The payloads that arrive at dst:7000 from `count` datagrams (bounded in time)."""
    payloads = [b"federated %d" % i for i in range(count)]
    return received(ns_to, "0.0.0.0", 7000, lambda: run_in_netns(ns_from, send_udp, dst, 7000, payloads), count)


def _audit(db: Path) -> list[dict]:
    out = subprocess.run([SEALNET, "controlplane", "audit", "--db", str(db), "--format", "json"],
                         capture_output=True, text=True)
    return json.loads(out.stdout)["rows"] if out.returncode == 0 else []


def test_two_domains_with_federated_control_planes_seal_end_to_end(topology, tmp_path) -> None:
    """Keys agreed between two domains' control planes, released to one attested node each: sealed UDP
    flows both ways over the veth, and the wire never carries the plaintext."""
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    d = tmp_path
    (d / "p.policy").write_text(FEDERATED)
    assert policyc(["keygen", str(d / "auth")]) == 0
    assert policyc(["compile", str(d / "p.policy"), "-o", str(d / "p.bundle"), "--sign-key", str(d / "auth")]) == 0
    for name in ("cpa", "cpb", "node"):
        subprocess.run([SEALNET, "attest", "sim-keygen", str(d / name)], check=True, capture_output=True)
    trust = [x for n in ("cpa", "cpb", "node") for x in ("--allow-sim", str(d / f"{n}.pub"))]
    procs: list[subprocess.Popen] = []
    loaded: list[tuple[str, str, dict]] = []

    def serve(domain: str, *extra: str) -> str:
        p = subprocess.Popen([SEALNET, "controlplane", "serve", "--bundle", str(d / "p.bundle"), "--trust",
                              str(d / "auth.pub"), "--domain", domain, "--db", str(d / f"{domain}.db"), "--listen",
                              "127.0.0.1:0", "--sim-platform", str(d / f"cp{domain}"), "--sim-launch", LAUNCH_TEXT,
                              "--epoch-seconds", "120", *trust, *extra],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(p)
        line = _wait_line(p, "stdout", lambda s: s.startswith("serving"))[-1]
        return "http://" + line.split(" on ")[1].split(" ")[0].rstrip(";")

    def agent(iface: str, ns: str, url: str) -> None:
        env = {**os.environ, "SEALNET_STATE_DIR": str(d / f"run-{ns}"), "SEALNET_LIB_DIR": str(d / f"lib-{ns}")}
        p = subprocess.Popen([SEALNET, "node", "run", "--iface", iface, "--netns", ns, "--bundle", str(d / "p.bundle"),
                              "--trust", str(d / "auth.pub"), "--control", url, "--sim-platform", str(d / "node"),
                              "--sim-launch", LAUNCH_TEXT, *trust],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(p)
        lines = _wait_line(p, "stderr", lambda s: _event(s) == "loaded")
        release = [json.loads(x) for x in lines if _event(x) == "control_plane_release"]
        assert release and release[0]["missing"] == [], lines
        loaded.append((iface, ns, env))

    try:
        url_a = serve("a")
        url_b = serve("b", "--peer", f"a={url_a}")
        deadline = time.monotonic() + 30
        while not any(r["event"] == "federate" and r["code"] == "ok" for r in _audit(d / "b.db")):
            assert time.monotonic() < deadline, _audit(d / "b.db")
            time.sleep(0.2)
        agent(veth.a, ns_a, url_a)
        # b runs no data plane yet: what reaches its socket is a's seal, never the plaintext
        early = _exchange(ns_a, ns_b, "198.18.0.2")
        assert early and not any(b"federated" in p for p in early)
        agent(veth.b, ns_b, url_b)
        plain = [b"federated %d" % i for i in range(20)]
        assert sorted(_exchange(ns_a, ns_b, "198.18.0.2")) == sorted(plain)
        assert sorted(_exchange(ns_b, ns_a, "198.18.0.1")) == sorted(plain)
        releases = [r for db in ("a", "b") for r in _audit(d / f"{db}.db") if r["event"] == "release"]
        assert len(releases) >= 2 and all(r["detail"]["simulated"] for r in releases)
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        for iface, ns, env in loaded:
            subprocess.run([SEALNET, "node", "unload", "--iface", iface, "--netns", ns, "--open-sealed-flows"],
                           capture_output=True, env=env)
