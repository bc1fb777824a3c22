"""Issue 11, attacked as the review did: nonces, replay, kill -9, unload, rollback, bad input.

Each test names the finding it reproduces. Two namespaces a (198.18.0.1) and
b (198.18.0.2) on a veth; the policy seals everything between them except
one plaintext port. Every loop is bounded; the topology fixture deletes the
namespaces and every test unloads what it loaded.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from sealnet.contracts.libbpf import Map, get_pinned
from sealnet.runtime import node, nonce_ledger, seal_wire
from sealnet.runtime.netns import run_in_netns
from sealing import key_file_text, pair_key
from testbed import Capture, bpf_lsm_unavailable_reason, inject, received, send_udp, udp_frames_to

POLICY = '''policy "safety" version {version}
domain a {{ tee tdx; nodes 198.18.0.1/32 }}
domain b {{ tee tdx; nodes 198.18.0.2/32 }}
rule plain: allow plaintext udp from a to b port 9999
rule ab: seal from a to b
rule ba: seal from b to a
'''
IP_A, IP_B = "198.18.0.1", "198.18.0.2"
SEALED_PORT = 7000
GUARDED = bpf_lsm_unavailable_reason() is None  # sealing loads attach the bypass guard (load:guard)
SEALNET = [sys.executable, "-m", "sealnet.runtime.cli"]


# ------------------------------------------------------------------ fixtures and helpers


@dataclass
class Lab:
    tmp: Path
    auth: Path
    bundles: dict[int, Path]
    keys: Path
    key: bytes

    def env(self) -> dict[str, str]:
        return {**os.environ, "SEALNET_STATE_DIR": node.STATE_DIR, "SEALNET_LIB_DIR": node.DURABLE_DIR}


_bundles: dict[str, bytes] = {}


def _bundle(tmp: Path, auth: Path, version: int) -> Path:
    from sealnet.compiler.cli import main as policyc

    policy, out = tmp / f"safety{version}.policy", tmp / f"safety{version}.bundle"
    policy.write_text(POLICY.format(version=version))
    assert policyc(["compile", str(policy), "-o", str(out), "--sign-key", str(auth)]) == 0
    return out


@pytest.fixture(scope="module")
def signed(tmp_path_factory) -> tuple[Path, dict[int, Path]]:
    from sealnet.compiler.cli import main as policyc

    tmp = tmp_path_factory.mktemp("bundles")
    auth = tmp / "auth.key"
    assert policyc(["keygen", str(auth)]) == 0
    return auth, {v: _bundle(tmp, auth, v) for v in (1, 2)}


@pytest.fixture
def lab(tmp_path, monkeypatch, signed) -> Lab:
    monkeypatch.setattr(node, "STATE_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(node, "DURABLE_DIR", str(tmp_path / "lib"))
    auth, bundles = signed
    key = pair_key()
    keys = tmp_path / "shared.keys"
    keys.write_text(key_file_text(None, {("a", "b"): {"current": (3, key)}}))
    keys.chmod(0o600)
    return Lab(tmp_path, auth, bundles, keys, key)


def sealnet(lab: Lab, *args: str, failpoint: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = lab.env()
    if failpoint:
        env["SEALNET_FAILPOINT"] = failpoint
    return subprocess.run([*SEALNET, *args], env=env, capture_output=True, text=True, timeout=timeout)


def load_args(lab: Lab, iface: str, ns: str, version: int = 1, keys: bool = True) -> list[str]:
    return ["node", "load", str(lab.bundles[version]), "--iface", iface, "--netns", ns,
            "--trust", f"{lab.auth}.pub", *(["--keys", str(lab.keys)] if keys else [])]


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sealnet: error:"), proc.stderr
    return lines[0]


def headers(frames: list[bytes]) -> list[seal_wire.SealHeader]:
    out = []
    for f in frames:
        packet = f[14:]
        out.append(seal_wire.SealHeader.unpack(packet[seal_wire.Ipv4View.parse(packet).payload_at:]))
    return out


def send_sealed(ns_a: str, ns_b: str, if_b: str, count: int, tag: bytes = b"x",
                tap: tuple[str, str] | None = None) -> list[bytes]:
    """a -> b on the sealed port; returns the sealed frames captured on b's side (or on `tap`,
    (namespace, interface): where an on-path attacker records them)."""
    capture = Capture(*(tap or (ns_b, if_b)))
    payloads = [tag + b"%04d" % i for i in range(count)]
    got = received(ns_b, IP_B, SEALED_PORT, lambda: run_in_netns(ns_a, send_udp, IP_B, SEALED_PORT, payloads), count)
    frames = udp_frames_to(capture.stop(), SEALED_PORT)
    assert sorted(got) == sorted(payloads)
    return frames


def forged_plaintext_arrives(ns_a: str, ns_b: str, if_a: str) -> bool:
    """Does a plaintext datagram to the sealed port, sent past a's TC, reach b's application?"""
    frame = _plain_frame(ns_a, if_a)
    got = received(ns_b, IP_B, SEALED_PORT, lambda: run_in_netns(ns_a, inject, if_a, [frame] * 3), 1)
    return bool(got)


def _plain_frame(ns_a: str, if_a: str) -> bytes:
    from packets import udp

    # Broadcast destination: the peer veth takes it whatever its MAC.
    return b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + udp(IP_A, IP_B, b"forged plaintext",
                                                                          dport=SEALED_PORT)


def verdicts(iface: str, ns: str, direction: str) -> dict[str, int]:
    from sealnet.runtime import node_counters

    state = node.read_state(iface, ns)
    assert state is not None
    return node_counters.verdict_counts(state)[direction]


# ------------------------------------------------------------------ finding 1: nonces across reload and reboot


@pytest.mark.kernel
def test_findings_1_no_nonce_repeats_across_reload_reboot_and_nodes_sharing_a_key_file(topology, lab) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)):  # one key file, shared by both nodes
        assert sealnet(lab, *load_args(lab, iface, ns)).returncode == 0
    seen: list[tuple[int, int, int]] = []
    try:
        seen += [(h.sender, h.cpu, h.seq) for h in headers(send_sealed(ns_a, ns_b, veth.b, 10))]
        assert sealnet(lab, *load_args(lab, veth.a, ns_a)).returncode == 0  # reload a: new program ids
        seen += [(h.sender, h.cpu, h.seq) for h in headers(send_sealed(ns_a, ns_b, veth.b, 10))]
        # Reboot of a: its runtime state is gone (fresh tmpfs), the kernel forgot everything, ids restart.
        assert sealnet(lab, "node", "unload", "--iface", veth.a, "--netns", ns_a, "--open-sealed-flows").returncode == 0
        node.STATE_DIR = str(lab.tmp / "run-after-reboot")
        assert sealnet(lab, *load_args(lab, veth.a, ns_a)).returncode == 0
        frames = send_sealed(ns_a, ns_b, veth.b, 10)
        seen += [(h.sender, h.cpu, h.seq) for h in headers(frames)]
        # b seals with the same file: its sender id is its own address, so its nonces are its own.
        back = Capture(ns_a, veth.a)
        received(ns_a, IP_A, SEALED_PORT, lambda: run_in_netns(ns_b, send_udp, IP_A, SEALED_PORT, [b"b%d" % i for i in range(5)]), 5)
        b_headers = headers(udp_frames_to(back.stop(), SEALED_PORT))
    finally:
        for iface, ns, state_dir in ((veth.a, ns_a, node.STATE_DIR), (veth.b, ns_b, str(lab.tmp / "run"))):
            node.STATE_DIR = state_dir
            node.unload(iface, ns, open_sealed_flows=True)
    assert len(seen) == 30 and len(set(seen)) == 30, "a nonce repeated under one key"
    assert {s for s, _, _ in seen} == {0xC6120001} and {h.sender for h in b_headers} == {0xC6120002}
    generations = [seq >> nonce_ledger.GENERATION_SHIFT for _, _, seq in seen]
    assert generations[0] < generations[10] < generations[20]  # each load in a newer generation
    assert max(seq for _, _, seq in seen) < 1 << 56  # every suite's nonce carries the whole sequence
    key = seal_wire.direction_key(lab.key, "a", "b", 3, seal_wire.SUITES[headers(frames)[0].suite])
    assert all(seal_wire.open_sealed(f[14:], key)[1] for f in frames)  # the documented decoder opens them


# ------------------------------------------------------------------ finding 2: concurrent loads


def _reserve_many(args: tuple[str, int]) -> list[int]:
    ledger_dir, n = args
    return [nonce_ledger.reserve_generation(ledger_dir, 4242) for _ in range(n)]


def test_finding_2_concurrent_reservations_never_share_a_generation(tmp_path) -> None:
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_reserve_many, [(str(tmp_path), 25)] * 4)
    generations = [g for chunk in results for g in chunk]
    assert len(generations) == 100 and len(set(generations)) == 100
    assert nonce_ledger.last_generation(str(tmp_path), 4242) == max(generations)


def test_a_reboot_that_lost_the_ledger_still_starts_after_the_old_generations(tmp_path) -> None:
    now = time.time()
    old = [nonce_ledger.reserve_generation(str(tmp_path / "old"), 7, now=now - 3600) for _ in range(5)]
    fresh = nonce_ledger.reserve_generation(str(tmp_path / "new-disk"), 7, now=now)
    assert fresh > max(old)


# ------------------------------------------------------------------ finding 4: replay after the receiver reloads


@pytest.mark.kernel
def test_finding_4_replays_are_dropped_after_the_receiver_reloads(topology, lab) -> None:
    # The attacker is on the path (namespace w, bridging a and b): it records the sealed frames
    # there and sends them again towards b. (Not from a: a sealing node refuses the qdisc bypass.)
    p = topology.on_path("198.18.0.0/30")
    for iface, ns in ((p.if_a, p.ns_a), (p.if_b, p.ns_b)):
        assert sealnet(lab, *load_args(lab, iface, ns)).returncode == 0

    def replay(frames: list[bytes]) -> list[bytes]:
        return received(p.ns_b, IP_B, SEALED_PORT, lambda: run_in_netns(p.ns_w, inject, p.w_to_b, frames), 5)

    try:
        frames = send_sealed(p.ns_a, p.ns_b, p.if_b, 5, tap=(p.ns_w, p.w_to_a))
        assert len(frames) == 5
        assert sealnet(lab, *load_args(lab, p.if_b, p.ns_b)).returncode == 0  # the receiver reloads
        before = verdicts(p.if_b, p.ns_b, "ingress")
        assert replay(frames) == []
        after = verdicts(p.if_b, p.ns_b, "ingress")
        assert after["seal_replay_drop"] - before["seal_replay_drop"] == 5
        send_sealed(p.ns_a, p.ns_b, p.if_b, 3)  # fresh traffic still flows
        # Unloaded, then loaded again (or rebooted): the windows come back from /var/lib/sealnet.
        assert sealnet(lab, "node", "unload", "--iface", p.if_b, "--netns", p.ns_b,
                       "--open-sealed-flows").returncode == 0
        assert sealnet(lab, *load_args(lab, p.if_b, p.ns_b)).returncode == 0
        assert replay(frames) == [] and verdicts(p.if_b, p.ns_b, "ingress")["seal_replay_drop"] == 5
        send_sealed(p.ns_a, p.ns_b, p.if_b, 3)
    finally:
        for iface, ns in ((p.if_a, p.ns_a), (p.if_b, p.ns_b)):
            node.unload(iface, ns, open_sealed_flows=True)


# ------------------------------------------------------------------ finding 5: kill -9 at every step


LOAD_STEPS = ("load:pinned", "load:journalled", "load:interface", *(("load:guard",) if GUARDED else ()),
              "load:sealnet_ingress", "load:sealnet_egress", "load:attached")


@pytest.mark.kernel
def test_finding_5_kill_9_at_each_step_of_a_first_load_and_of_a_replace(topology, lab) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    gso_before = _gso_max_segs(veth.b, ns_b)
    try:
        for step in LOAD_STEPS:
            # A first load killed at `step`: status answers in one line, the next load finishes it.
            killed = sealnet(lab, *load_args(lab, veth.b, ns_b), failpoint=step)
            assert killed.returncode == -9, (step, killed.stderr)
            status = sealnet(lab, "node", "status", "--iface", veth.b, "--netns", ns_b, "--format", "json")
            assert "Traceback" not in status.stderr, (step, status.stderr)
            attached = node.attached_program_ids(veth.b, ns_b)
            if attached["sealnet_ingress"] is not None:
                assert not forged_plaintext_arrives(ns_a, ns_b, veth.a), step
            assert sealnet(lab, *load_args(lab, veth.b, ns_b)).returncode == 0, step
            assert not forged_plaintext_arrives(ns_a, ns_b, veth.a), step
            doc = json.loads(sealnet(lab, "node", "status", "--iface", veth.b, "--netns", ns_b,
                                     "--format", "json").stdout)
            assert doc["enforcing"] and doc["phase"] == "running", step
            # A replace killed at `step`: the old or the new programs enforce, never neither.
            killed = sealnet(lab, *load_args(lab, veth.b, ns_b, version=2), failpoint=step)
            assert killed.returncode == (0 if step == "load:interface" else -9)  # a replace leaves the interface be
            assert None not in node.attached_program_ids(veth.b, ns_b).values(), step
            assert not forged_plaintext_arrives(ns_a, ns_b, veth.a), step
            unloaded = sealnet(lab, "node", "unload", "--iface", veth.b, "--netns", ns_b, "--open-sealed-flows")
            assert unloaded.returncode == 0, (step, unloaded.stderr)
            assert node.attached_program_ids(veth.b, ns_b) == {"sealnet_egress": None, "sealnet_ingress": None}
            assert not os.listdir(node.PIN_ROOT) or not any(
                p.endswith(veth.b) for p in os.listdir(node.PIN_ROOT)), step
            assert _gso_max_segs(veth.b, ns_b) == gso_before, step
            # rollback protection saw version 2 in some steps: start each step from a clean record
            for f in Path(node.DURABLE_DIR).glob("policy-versions.json"):
                f.unlink()
    finally:
        if node.read_state(veth.b, ns_b) is not None:
            node.unload(veth.b, ns_b, open_sealed_flows=True)


@pytest.mark.kernel
@pytest.mark.parametrize("step", ["unload:journalled", "unload:sealnet_egress"])
def test_finding_5_kill_9_during_unload_is_finished_by_the_next_command(topology, lab, step) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    gso_before = _gso_max_segs(veth.b, ns_b)
    assert sealnet(lab, *load_args(lab, veth.b, ns_b)).returncode == 0
    killed = sealnet(lab, "node", "unload", "--iface", veth.b, "--netns", ns_b, "--open-sealed-flows", failpoint=step)
    assert killed.returncode == -9
    status = sealnet(lab, "node", "status", "--iface", veth.b, "--netns", ns_b)
    assert "Traceback" not in status.stderr and "interrupted unload" in status.stdout + status.stderr
    assert sealnet(lab, "node", "unload", "--iface", veth.b, "--netns", ns_b).returncode == 0
    assert node.attached_program_ids(veth.b, ns_b) == {"sealnet_egress": None, "sealnet_ingress": None}
    assert node.read_state(veth.b, ns_b) is None and _gso_max_segs(veth.b, ns_b) == gso_before
    assert not _has_clsact(veth.b, ns_b)


@pytest.mark.kernel
@pytest.mark.parametrize("step", ["keys:receive", "keys:generation"])
def test_kill_9_during_a_key_rotation_never_sends_plaintext(topology, lab, step) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)):
        assert sealnet(lab, *load_args(lab, iface, ns)).returncode == 0
    try:
        lab.keys.write_text(key_file_text(None, {("a", "b"): {"current": (3, lab.key), "next": (4, pair_key())}}))
        killed = sealnet(lab, "node", "keys", "--iface", veth.a, "--netns", ns_a, "--keys", str(lab.keys),
                         failpoint=step)
        assert killed.returncode == -9
        frames = send_sealed(ns_a, ns_b, veth.b, 5)  # still sealed with epoch 3, and opened
        assert all(b"x00" not in f for f in frames) and {h.epoch for h in headers(frames)} == {3}
        assert sealnet(lab, "node", "keys", "--iface", veth.a, "--netns", ns_a, "--keys", str(lab.keys)).returncode == 0
        send_sealed(ns_a, ns_b, veth.b, 3)
    finally:
        for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)):
            node.unload(iface, ns, open_sealed_flows=True)


def _gso_max_segs(iface: str, ns: str) -> int:
    from sealnet.runtime.netns import iproute

    with iproute(ns) as ipr:
        index = ipr.link_lookup(ifname=iface)[0]
        return int(ipr.get_links(index)[0].get_attr("IFLA_GSO_MAX_SEGS"))


def _has_clsact(iface: str, ns: str) -> bool:
    from sealnet.runtime.netns import iproute

    with iproute(ns) as ipr:
        index = ipr.link_lookup(ifname=iface)[0]
        return any(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=index))


# ------------------------------------------------------------------ finding 6: unload while sealed traffic flows


@pytest.mark.kernel
def test_finding_6_unload_fails_closed_for_sealed_flows_and_says_how_to_open_them(topology, lab) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    assert not _has_clsact(veth.a, ns_a)
    for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)):
        assert sealnet(lab, *load_args(lab, iface, ns)).returncode == 0
    try:
        refused = sealnet(lab, "node", "unload", "--iface", veth.a, "--netns", ns_a)
        assert "--open-sealed-flows" in one_line_error(refused)
        capture = Capture(ns_b, veth.b)
        run_in_netns(ns_a, send_udp, IP_B, SEALED_PORT, [b"PLAINTEXT-%d" % i for i in range(200)])
        frames = capture.stop()
        assert udp_frames_to(frames, SEALED_PORT) and not any(b"PLAINTEXT-" in f for f in frames)
        opened = sealnet(lab, "node", "unload", "--iface", veth.a, "--netns", ns_a, "--open-sealed-flows")
        assert opened.returncode == 0, opened.stderr
        assert not _has_clsact(veth.a, ns_a)  # we created it, so it went with us
    finally:
        node.unload(veth.b, ns_b, open_sealed_flows=True)
        if node.read_state(veth.a, ns_a) is not None:
            node.unload(veth.a, ns_a, open_sealed_flows=True)


# ------------------------------------------------------------------ finding 7: rollback


@pytest.mark.kernel
def test_finding_7_an_older_policy_version_is_refused_unless_forced(topology, lab) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    assert sealnet(lab, *load_args(lab, veth.a, ns_a, version=2)).returncode == 0
    try:
        error = one_line_error(sealnet(lab, *load_args(lab, veth.a, ns_a, version=1)))
        assert "version 1 is older than version 2" in error and "--force" in error
        state = node.read_state(veth.a, ns_a)
        assert state is not None and state.policy_version == 2
        assert sealnet(lab, "node", "unload", "--iface", veth.a, "--netns", ns_a, "--open-sealed-flows").returncode == 0
        # Has run: even with nothing loaded now, version 1 stays refused.
        one_line_error(sealnet(lab, *load_args(lab, veth.a, ns_a, version=1)))
        assert sealnet(lab, *load_args(lab, veth.a, ns_a, version=1), "--force").returncode == 0
    finally:
        if node.read_state(veth.a, ns_a) is not None:
            node.unload(veth.a, ns_a, open_sealed_flows=True)


# ------------------------------------------------------------------ findings 11, 12: bad input, one line each


@pytest.mark.kernel
def test_findings_11_12_bad_input_is_one_line_and_changes_nothing(topology, lab) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    fifo = lab.tmp / "bundle.fifo"
    os.mkfifo(fifo)
    trust = ["--trust", f"{lab.auth}.pub"]
    started = time.monotonic()
    assert "not a regular file" in one_line_error(sealnet(lab, "node", "load", "/dev/zero", "--iface", veth.a,
                                                           "--netns", ns_a, *trust, timeout=20))
    assert "not a regular file" in one_line_error(sealnet(lab, "node", "load", str(fifo), "--iface", veth.a,
                                                           "--netns", ns_a, *trust, timeout=20))
    assert time.monotonic() - started < 20
    bundle = str(lab.bundles[1])
    assert "no interface" in one_line_error(sealnet(lab, "node", "load", bundle, "--iface", "nope0", "--netns", ns_a, *trust))
    one_line_error(sealnet(lab, "node", "load", bundle, "--iface", veth.a, "--netns", "sn-no-such-ns", *trust))
    one_line_error(sealnet(lab, "node", "load", bundle, "--iface", veth.a, "--netns", "../etc", *trust))
    nested = lab.tmp / "nested.keys"
    nested.write_text("[" * 200_000)
    nested.chmod(0o600)
    assert "nested too deeply" in one_line_error(sealnet(lab, *load_args(lab, veth.a, ns_a)[:-1], str(nested)))
    loose = lab.tmp / "loose.keys"
    loose.write_text(lab.keys.read_text())
    loose.chmod(0o644)
    assert "--allow-loose-key-permissions" in one_line_error(sealnet(lab, *load_args(lab, veth.a, ns_a)[:-1], str(loose)))
    assert node.attached_program_ids(veth.a, ns_a) == {"sealnet_egress": None, "sealnet_ingress": None}
    one_line_error(sealnet(lab, "node", "status", "--iface", veth.a, "--netns", ns_a))  # nothing loaded

    assert sealnet(lab, *load_args(lab, veth.a, ns_a)).returncode == 0
    try:
        # `load | head -1`: the reader goes away; no traceback.
        pipe = subprocess.run(f"{' '.join(SEALNET)} {' '.join(load_args(lab, veth.a, ns_a))} | head -c 1",
                              shell=True, env=lab.env(), capture_output=True, text=True, timeout=60)
        assert "Traceback" not in pipe.stderr and "BrokenPipe" not in pipe.stderr
        # status and unload as an unprivileged user: one line each, nothing changed.
        for verb in (["status"], ["unload", "--open-sealed-flows"]):
            proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *SEALNET, "node",
                                   *verb, "--iface", veth.a, "--netns", ns_a], env=lab.env(), capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert None not in node.attached_program_ids(veth.a, ns_a).values()
        # status with a pin missing: one line that says how to repair it.
        state = node.read_state(veth.a, ns_a)
        assert state is not None
        os.unlink(os.path.join(state.pin_dir, "verdict_hits"))
        assert "load the bundle again" in one_line_error(sealnet(lab, "node", "status", "--iface", veth.a, "--netns", ns_a))
    finally:
        node.unload(veth.a, ns_a, open_sealed_flows=True)


# ------------------------------------------------------------------ status and metrics trace drops to lines


@pytest.mark.kernel
def test_status_json_and_metrics_name_the_rule_and_line_of_every_counter(topology, lab) -> None:
    import urllib.request

    from sealnet.runtime import node_metrics

    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    assert sealnet(lab, *load_args(lab, veth.b, ns_b, keys=False)).returncode == 0
    try:
        run_in_netns(ns_a, send_udp, IP_B, SEALED_PORT, [b"plain"] * 4)  # a has no data plane: plaintext, dropped at b
        doc = json.loads(sealnet(lab, "node", "status", "--iface", veth.b, "--netns", ns_b, "--format", "json").stdout)
        rules = {(r["direction"], r["name"]): r for r in doc["counters"]["rules"]}
        assert rules[("ingress", "ab")]["line"] == 5 and rules[("ingress", "ab")]["packets"] >= 4
        assert rules[("ingress", "ab")]["verdicts"]["seal_plaintext_drop"] >= 4  # the drop, traced to line 5
        assert rules[("ingress", "default")]["action"] == "deny"
        assert doc["counters"]["verdict_hits"]["ingress"]["seal_plaintext_drop"] >= 4
        assert doc["counters"]["replay_evictions"] == 0  # the stream table's, from its pin
        assert doc["measurement"].startswith("sha384:") and set(doc["program_tags"]) == {"sealnet_egress", "sealnet_ingress"}
        server = node_metrics.start([(veth.b, ns_b)], node.STATE_DIR, "127.0.0.1:0")
        try:
            port = server.server_address[1]  # type: ignore[attr-defined]
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        finally:
            server.shutdown()  # type: ignore[attr-defined]
        assert f'sealnet_rule_packets_total{{action="seal",direction="ingress",iface="{veth.b}",line="5",rule="ab"}}' in text
        assert f'sealnet_verdict_packets_total{{direction="ingress",iface="{veth.b}",reason="seal_plaintext_drop",verdict="drop"}}' in text
        assert (f'sealnet_rule_verdict_packets_total{{direction="ingress",iface="{veth.b}",line="5",'
                f'reason="seal_plaintext_drop",rule="ab",verdict="drop"}}') in text
        assert f'sealnet_replay_evictions_total{{iface="{veth.b}"}} 0.0' in text
    finally:
        node.unload(veth.b, ns_b, open_sealed_flows=True)


# ------------------------------------------------------------------ finding 12: scratch wiped, maps frozen


@pytest.mark.kernel
def test_finding_12_the_scratch_holds_no_plaintext_after_a_packet(tmp_path) -> None:
    from sealnet.contracts import abi
    from packets import udp
    from sealing import ADDR, TC_ACT_OK, SealedDatapath

    dp = SealedDatapath.load(str(tmp_path))
    try:
        dp.install({("a", "b"): {"current": (1, pair_key())}})
        secret = b"PLAINTEXT-IN-SCRATCH" * 20
        retval, sealed = dp.egress(udp(ADDR["a"], ADDR["b"], secret))
        assert retval == TC_ACT_OK
        scratch = dp.obj.map(abi.SEAL_SCRATCH_MAP)
        for direction in abi.Direction:
            values = scratch.lookup_percpu(int(direction).to_bytes(4, "little")) or []
            assert values and not any(any(v) for v in values), f"{direction.label} scratch not wiped"
    finally:
        dp.close()


@pytest.mark.kernel
def test_finding_12_counters_and_key_slots_cannot_be_written_through_the_pins(topology, lab) -> None:
    from sealnet.contracts import abi
    from sealnet.contracts.libbpf import LibbpfError

    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    assert sealnet(lab, *load_args(lab, veth.a, ns_a)).returncode == 0
    try:
        state = node.read_state(veth.a, ns_a)
        assert state is not None
        for name in (*abi.COUNTER_MAPS, abi.SEAL_KEYS_MAP):
            with Map.from_fd(get_pinned(os.path.join(state.pin_dir, name)), owns_fd=True) as m:
                assert m.lookup(bytes(4)) is not None  # still readable (status, metrics)
                with pytest.raises(LibbpfError):
                    m.update(bytes(4), bytes(m.lookup_size))
    finally:
        node.unload(veth.a, ns_a, open_sealed_flows=True)


# ------------------------------------------------------------------ the agent as a service


class Agent:
    """`sealnet node run` in a subprocess, its JSON log lines collected as they come."""

    def __init__(self, lab: Lab, *args: str) -> None:
        self.proc = subprocess.Popen([*SEALNET, "node", "run", *args], env=lab.env(), stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True)
        self.events: list[dict[str, object]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "not-json", "line": line})

    def wait_for(self, event: str, after: int = 0, seconds: float = 60) -> dict[str, object]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for e in self.events[after:]:
                if e.get("event") == event:
                    return e
            assert self.proc.poll() is None, self.events
            time.sleep(0.1)
        raise AssertionError(f"no {event} in {self.events}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(15)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self.reader.join(timeout=5)


@pytest.mark.kernel
def test_node_run_loads_rotates_on_sighup_stops_on_sigterm_and_is_adopted_on_restart(topology, lab) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    args = ["--iface", veth.a, "--netns", ns_a, "--bundle", str(lab.bundles[1]), "--trust", f"{lab.auth}.pub",
            "--keys", str(lab.keys), "--grace", "1"]
    agent = Agent(lab, *args)
    try:
        loaded = agent.wait_for("loaded")
        assert loaded["policy"] == "safety version 1" and lab.key.hex() not in json.dumps(agent.events)
        assert None not in node.attached_program_ids(veth.a, ns_a).values()
        # Rotation on SIGHUP: receive keys first, then send; the previous epoch goes after the grace.
        lab.keys.write_text(key_file_text(None, {("a", "b"): {"current": (4, pair_key()), "next": (5, pair_key())}}))
        mark = len(agent.events)
        agent.proc.send_signal(1)
        rotated = agent.wait_for("keys_installed", mark)
        assert rotated["epochs"] == {"a->b": 4, "b->a": 4}
        agent.wait_for("grace_ended", mark)
        # A bad key file on SIGHUP is refused; the running data plane stays as it is.
        lab.keys.write_text("{broken")
        mark = len(agent.events)
        agent.proc.send_signal(1)
        assert "not JSON" in str(agent.wait_for("reload_refused", mark)["error"])
        running = node.attached_program_ids(veth.a, ns_a)
    finally:
        code = agent.stop()
    assert code == 0 and agent.events[-1]["event"] == "stopped"
    assert node.attached_program_ids(veth.a, ns_a) == running  # SIGTERM leaves the data plane enforcing
    lab.keys.write_text(key_file_text(None, {("a", "b"): {"current": (4, pair_key())}}))
    again = Agent(lab, *args)
    try:
        adopted = again.wait_for("adopted")
        assert adopted["enforcing"] is True
        time.sleep(1.5)
        assert not any(e.get("event") == "loaded" for e in again.events)  # same measurement: no reload
    finally:
        assert again.stop() == 0
        node.unload(veth.a, ns_a, open_sealed_flows=True)


# ------------------------------------------------------------------ sequence ends, stream table churn


@pytest.mark.kernel
def test_a_counter_at_the_end_of_its_generation_stops_sealing_and_the_agent_renews_it(tmp_path) -> None:
    from sealnet.contracts import abi
    from packets import udp
    from sealing import ADDR, TC_ACT_OK, TC_ACT_SHOT, SealedDatapath

    dp = SealedDatapath.load(str(tmp_path))
    try:
        dp.install({("a", "b"): {"current": (1, pair_key())}})
        seq_map = dp.obj.map(abi.SEAL_SEQ_MAP)
        base = int.from_bytes(seq_map.lookup_percpu(bytes(4))[0], "little") & ~((1 << 32) - 1)
        seq_map.update(bytes(4), (base + nonce_ledger.COUNT_END - 2).to_bytes(8, "little"))
        packet = udp(ADDR["a"], ADDR["b"], b"near the end")
        retval, sealed = dp.egress(packet)
        assert retval == TC_ACT_OK
        assert seal_wire.SealHeader.unpack(sealed[28:]).seq == base + nonce_ledger.COUNT_END - 1
        for _ in range(50):  # past the end: dropped, and the counter does not creep on
            assert dp.egress(packet)[0] == TC_ACT_SHOT
        counts = [int.from_bytes(v, "little") for v in seq_map.lookup_percpu(bytes(4))]
        assert max(c & ((1 << 32) - 1) for c in counts) <= nonce_ledger.COUNT_END + 1
        assert all(c >> 32 == base >> 32 for c in counts if c)  # never into the next generation
        # A fresh generation (what `node run` does from 2^31 on) seals again, in newer numbers.
        dp.install({("a", "b"): {"current": (1, pair_key())}}, sender=dp.sender)
        retval, sealed = dp.egress(packet)
        assert retval == TC_ACT_OK and seal_wire.SealHeader.unpack(sealed[28:]).seq >> 32 > base >> 32
    finally:
        dp.close()


@pytest.mark.kernel
def test_finding_9_an_epoch_released_after_rotation_leaves_the_stream_table(tmp_path) -> None:
    from sealnet.contracts import abi
    from sealnet.runtime import replay_table, seal_keys
    from packets import udp
    from sealing import ADDR, TC_ACT_OK, SealedDatapath

    dp = SealedDatapath.load(str(tmp_path))
    try:
        first, second = pair_key(), pair_key()
        dp.install({("a", "b"): {"current": (5, first), "next": (6, second)}})
        key5 = dp.direction_key("b", "a", "current")
        packet = udp(ADDR["b"], ADDR["a"], b"from many senders")
        for sender in range(1, 201):  # 200 streams of epoch 5 (senders reloading, CPUs, ...)
            sealed = seal_wire.seal(packet, key5, dp.header(epoch=5, sender=sender, cpu=0, seq=1))
            assert dp.ingress(sealed)[0] == TC_ACT_OK
        table = replay_table.ReplayTable.of_object(dp.obj)
        assert len(table.streams()) == 200
        dp.install({("a", "b"): {"current": (6, second), "next": (7, pair_key())}})  # rotate; 5 is previous
        released = seal_keys.retire_previous(dp.handles())  # the grace period ends
        assert {epoch for _, epoch in released} == {5}
        assert replay_table.forget(dp.obj.program(abi.FORGET_STREAMS_PROGRAM).fd, released) == 200
        assert table.streams() == []
        # None of those packets opens again: their key is gone with their windows.
        old = seal_wire.seal(packet, key5, dp.header(epoch=5, sender=1, cpu=0, seq=1))
        assert dp.ingress(old)[0] != TC_ACT_OK
    finally:
        dp.close()
