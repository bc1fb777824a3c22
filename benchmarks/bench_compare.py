"""sealnet against plaintext, wireguard-go and stunnel: one run, two namespaces, one veth.

Run (root, BPF, iperf3, wireguard-go, stunnel4):
    .venv/bin/python benchmarks/bench_compare.py [--reps 3] [--seconds 3] [--pings 2000] [--out benchmarks/results]

Every figure is the median of `reps` repetitions and is printed with its ratio
to plaintext measured in the same run:
1. Per packet, BPF_PROG_TEST_RUN: the decision at 10,000 rules (against a TC
   program that only returns TC_ACT_OK), and seal (egress) and open (ingress)
   at 64/512/1400 bytes for every cipher suite the compiler knows
   (contracts.manifest.CIPHER_SUITES; aes-ccm once per kernel AES driver),
   against the same data plane passing the same packet in plaintext. A suite
   that does not build or seal yet is reported as unavailable, not skipped
   silently. Open is timed on packets another node's object sealed.
2. Over the veth pair, for each configuration: 64-byte UDP and TCP
   request/response round trips (one Python client and echo server for all
   configurations), iperf3 TCP throughput with 1 and 4 streams, and CPU time
   per byte moved: user+system seconds of the iperf3 processes (as iperf3
   reports them, which includes the softirq work done in their context) plus
   the tunnel daemons' (/proc/PID/stat), over the bytes received. Work done by
   ksoftirqd is not counted, for any configuration.
   Configurations: plaintext as the system sets the interfaces; plaintext
   with sealnet's interface preparation (runtime/interface.py) and no
   program; sealnet with each suite; wireguard-go (userspace WireGuard over
   the same veth); stunnel (TLS 1.3 over TCP; it carries no UDP).

Writes compare-<time>.json, .md and .png under --out. Everything created
(namespaces, processes, key and certificate files, pinned objects) is removed
on exit, also on failure; every wait is bounded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # testbed, packets
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_datapath import BASELINE_C, per_packet_ns, sample_frames  # noqa: E402
from bench_seal import IP_A, IP_B, SEALED, _key_file  # noqa: E402
from gen_policy import generate  # noqa: E402

from sealnet.compiler.build import build_object, compile_c, find_clang  # noqa: E402
from sealnet.compiler.frontend import compile_text  # noqa: E402
from sealnet.contracts import abi  # noqa: E402
from sealnet.contracts.libbpf import BpfObject  # noqa: E402
from sealnet.contracts.manifest import AES_IMPLEMENTATIONS, CIPHER_SUITES  # noqa: E402
from sealnet.runtime import interface, node, seal_keys, seal_wire  # noqa: E402
from sealnet.runtime.netns import popen, run, run_in_netns  # noqa: E402
from testbed import Topology, echo, udp_socket  # noqa: E402
from packets import ETH, udp  # noqa: E402

SIZES = (64, 512, 1400)
DECISION_RULES = 10_000
UDP_PORT, TCP_PORT, IPERF_PORT = 7000, 7001, 5201
TLS_PORTS = {TCP_PORT: 8443, IPERF_PORT: 8444}  # stunnel: cleartext port -> TLS port between the namespaces
WG_NET = ("10.99.0.1", "10.99.0.2")
WG_PORT = 51820
RR_BYTES = 64
TC_ACT_OK = abi.TC_ACT_OK
SUITE_BYTE_OFFSET = 14 + 20 + 8 + 1  # Ethernet, IPv4, UDP, then the seal header's version byte
PLAIN = "plaintext (system)"
PLAIN_IFACE = "plaintext (sealnet iface)"
WAIT_S = 5.0


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# ------------------------------------------------------------------ per packet


@dataclass(frozen=True)
class Variant:
    suite: str
    driver: str  # AES driver compiled in ("" when the suite uses none)

    @property
    def label(self) -> str:
        return f"{self.suite} ({self.driver})" if self.driver else self.suite


def variants() -> list[Variant]:
    out = []
    for suite in CIPHER_SUITES:
        drivers = AES_IMPLEMENTATIONS if suite.startswith("aes") else ("",)
        out += [Variant(suite, d) for d in drivers]
    return out


def _with_cipher(text: str, suite: str) -> str:
    head, rest = text.split("\n", 1)
    return f"{head}\ncipher {suite}\n{rest}"


def _build(variant: Variant, text: str) -> bytes:
    policy, diagnostics = compile_text(_with_cipher(text, variant.suite), "bench.policy")
    if policy is None:
        raise RuntimeError("; ".join(f"{d.code} {d.message}" for d in diagnostics))
    return build_object(policy, aes_implementation=variant.driver or AES_IMPLEMENTATIONS[0])


def _one_run_ns(prog, frame: bytes) -> tuple[int, bytes]:  # type: ignore[no-untyped-def]
    result = prog.test_run(frame, data_size_out=4096)
    if result.retval != TC_ACT_OK:
        raise RuntimeError(f"{prog.name}: a benchmark packet was dropped (retval {result.retval})")
    return result.duration_ns, result.data_out


def decision_costs(reps: int) -> dict[str, Any]:
    clang = find_clang()
    with BpfObject.open_memory(compile_c(BASELINE_C, clang), "baseline") as base:
        base.load()
        frames = [ETH + udp(IP_A, IP_B, bytes(18))] * 5
        base_ns = _median([per_packet_ns(base.program("pass"), frames) for _ in range(reps)])
    policy, _ = compile_text(generate(DECISION_RULES), "bench")
    assert policy is not None
    frames = sample_frames(policy, random.Random(11))
    with BpfObject.open_memory(build_object(policy), "decision") as obj:
        obj.load()
        prog = obj.program(abi.EGRESS_PROGRAM)
        ns = _median([per_packet_ns(prog, frames) for _ in range(reps)])
        verified = prog.info().verified_insns
    return {"rules": DECISION_RULES, "ns": ns, "baseline_ns": base_ns, "ratio": ns / base_ns,
            "verified_insns": verified}


def seal_open_costs(variant: Variant, samples: int, reps: int, state_dir: str) -> list[dict[str, Any]]:
    """Seal on node a's object, open on node b's (same pair key), plaintext on the same programs."""
    obj_bytes = _build(variant, SEALED)
    pair_key = os.urandom(32)
    rows = []
    with ExitStack() as stack:
        programs = {}
        for role, sender in (("a", 1), ("b", 2)):
            obj = stack.enter_context(BpfObject.open_memory(obj_bytes, f"bench{role}"))
            obj.load()
            handles = node.seal_handles(obj)
            if handles is None:
                raise RuntimeError("object built without the sealing path")
            seal_keys.install(handles, _key_file(pair_key, None), {"a": 1, "b": 2},
                              sender=int.from_bytes(os.urandom(3), "big") + sender,
                              ledger_dir=os.path.join(state_dir, role))
            programs[role] = (obj.program(abi.EGRESS_PROGRAM), obj.program(abi.INGRESS_PROGRAM))
        egress_a, _ = programs["a"]
        _, ingress_b = programs["b"]
        # The suite byte of a sealed packet says which AEAD the object really runs.
        sealed = _one_run_ns(egress_a, ETH + udp(IP_A, IP_B, bytes(64)))[1]
        suite = sealed[SUITE_BYTE_OFFSET]
        if suite != seal_wire.SUITE_BY_NAME[variant.suite].id:
            raise RuntimeError(f"the object seals with suite id {suite}, not {variant.suite}'s")
        for size in SIZES:
            payload = os.urandom(size)
            plain, seal, opened = [], [], []
            for _ in range(reps):
                base = [_one_run_ns(egress_a, ETH + udp(IP_A, IP_B, payload, dport=9999))[0] for _ in range(samples)]
                runs = [_one_run_ns(egress_a, ETH + udp(IP_A, IP_B, payload)) for _ in range(samples)]
                plain.append(_median(base))
                seal.append(_median([t for t, _ in runs]))
                opened.append(_median([_one_run_ns(ingress_b, out)[0] for _, out in runs]))
            p, s, o = _median(plain), _median(seal), _median(opened)
            rows.append({"suite": variant.label, "payload": size, "plaintext_ns": p, "seal_ns": s,
                         "open_ns": o, "seal_ratio": s / p, "open_ratio": o / p})
    return rows


# ------------------------------------------------------------------ over the veth pair


@dataclass
class Target:
    """Where the client (in client_ns) reaches the servers (in server_ns) for one configuration."""

    client_ns: str
    server_ns: str
    bind_ip: str
    connect_ip: str
    carries_udp: bool = True
    daemons: list[subprocess.Popen[Any]] = field(default_factory=list)


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def _tcp_server(ip: str, port: int) -> socket.socket:
    s = socket.create_server((ip, port))
    s.settimeout(0.2)
    return s


def _tcp_echo(server: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except (socket.timeout, OSError):
            continue
        with conn:
            conn.settimeout(WAIT_S)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                while not stop.is_set():
                    data = conn.recv(4096)
                    if not data:
                        break
                    conn.sendall(data)
            except OSError:
                continue


def _recv_exact(sock: socket.socket, n: int) -> None:
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionError("echo server closed")
        got += len(chunk)


@contextmanager
def _echo_servers(t: Target) -> Iterator[None]:
    stop = threading.Event()
    sockets = [run_in_netns(t.server_ns, _tcp_server, t.bind_ip, TCP_PORT)]
    threads = [threading.Thread(target=_tcp_echo, args=(sockets[0], stop), daemon=True)]
    if t.carries_udp:
        sockets.append(run_in_netns(t.server_ns, udp_socket, t.bind_ip, UDP_PORT))
        threads.append(threading.Thread(target=echo, args=(sockets[1], stop), daemon=True))
    for th in threads:
        th.start()
    try:
        yield
    finally:
        stop.set()
        for s in sockets:
            s.close()
        for th in threads:
            th.join(timeout=WAIT_S)


def _client(t: Target, kind: int) -> socket.socket:
    def make() -> socket.socket:
        if kind == socket.SOCK_DGRAM:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.connect((t.connect_ip, UDP_PORT))
        else:
            s = socket.create_connection((t.connect_ip, TCP_PORT), timeout=WAIT_S)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(WAIT_S)
        return s

    return run_in_netns(t.client_ns, make)


def round_trip_us(t: Target, kind: int, count: int) -> float:
    """Median of `count` 64-byte request/response round trips (after 50 warm-up ones)."""
    payload = os.urandom(RR_BYTES)
    with _client(t, kind) as s:
        times = []
        for i in range(count + 50):
            start = time.perf_counter_ns()
            s.send(payload)
            if kind == socket.SOCK_DGRAM:
                s.recv(2048)
            else:
                _recv_exact(s, RR_BYTES)
            if i >= 50:
                times.append(time.perf_counter_ns() - start)
    return _median(times) / 1000


def iperf(t: Target, streams: int, seconds: int) -> dict[str, float]:
    """iperf3 TCP, `streams` parallel streams: Gbit/s received and CPU ns per byte."""
    null = subprocess.DEVNULL
    server = popen(t.server_ns, ["iperf3", "-s", "-1", "-B", t.bind_ip, "-p", str(IPERF_PORT)], stdout=null, stderr=null)
    try:
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            daemons_before = _cpu_s([d.pid for d in t.daemons])
            out = run(t.client_ns, ["iperf3", "-c", t.connect_ip, "-p", str(IPERF_PORT), "-t", str(seconds),
                                    "-P", str(streams), "-J"], capture_output=True, timeout=seconds + 30)
            daemons_s = _cpu_s([d.pid for d in t.daemons]) - daemons_before
            end = json.loads(out.stdout or b"{}").get("end", {}) if out.returncode == 0 else {}
            if "sum_received" not in end:  # the server was not listening yet
                time.sleep(0.2)
                continue
            received = end["sum_received"]
            cpu = end.get("cpu_utilization_percent", {})
            cpu_s = (cpu.get("host_total", 0) + cpu.get("remote_total", 0)) / 100 * received["seconds"] + daemons_s
            return {"gbit_s": received["bits_per_second"] / 1e9,
                    "cpu_ns_per_byte": cpu_s * 1e9 / max(received["bytes"], 1),
                    "retransmits": float(end.get("sum_sent", {}).get("retransmits", 0))}
        raise RuntimeError("iperf3 never connected")
    finally:
        server.kill()
        server.wait(timeout=WAIT_S)


def measure(t: Target, reps: int, seconds: int, pings: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {}
    with _echo_servers(t):
        for _ in range(reps):
            if t.carries_udp:
                samples.setdefault("udp_rtt_us", []).append(round_trip_us(t, socket.SOCK_DGRAM, pings))
            samples.setdefault("tcp_rtt_us", []).append(round_trip_us(t, socket.SOCK_STREAM, pings))
            for streams in (1, 4):
                r = iperf(t, streams, seconds)
                samples.setdefault(f"tcp{streams}_gbit_s", []).append(r["gbit_s"])
                samples.setdefault(f"tcp{streams}_cpu_ns_per_byte", []).append(r["cpu_ns_per_byte"])
                samples.setdefault(f"tcp{streams}_retransmits", []).append(r["retransmits"])
    return {k: _median(v) for k, v in samples.items()}


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=WAIT_S)


@contextmanager
def plaintext(topo: Topology, prepared: bool) -> Iterator[Target]:
    ns_a, ns_b, veth = topo.pair("198.18.0.0/30")
    if prepared:
        interface.prepare(veth.a, ns_a)
        interface.prepare(veth.b, ns_b)  # the namespaces go away with the topology
    yield Target(ns_a, ns_b, IP_B, IP_B)


@contextmanager
def sealnet(topo: Topology, variant: Variant) -> Iterator[Target]:
    obj = _build(variant, SEALED)
    pair_key = os.urandom(32)
    ns_a, ns_b, veth = topo.pair("198.18.0.0/30")
    loaded: list[tuple[str, str]] = []
    try:
        for iface, ns in ((veth.a, ns_a), (veth.b, ns_b)):
            keys = _key_file(pair_key, int.from_bytes(os.urandom(3), "big") + 1)
            node.load_object(obj, iface=iface, netns=ns, measurement="sha384:bench", policy="bench",
                             domain_ids={"a": 1, "b": 2}, keys=keys)
            loaded.append((iface, ns))
        yield Target(ns_a, ns_b, IP_B, IP_B)
    finally:
        for iface, ns in loaded:
            node.unload(iface, ns, open_sealed_flows=True)


def _wg_key(tmp: str, name: str) -> tuple[str, str]:
    private = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True, timeout=10).stdout
    path = os.path.join(tmp, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(private)
    public = subprocess.run(["wg", "pubkey"], input=private, capture_output=True, text=True, check=True,
                            timeout=10).stdout.strip()
    return path, public


@contextmanager
def wireguard_go(topo: Topology, tmp: str) -> Iterator[Target]:
    ns_a, ns_b, veth = topo.pair("198.18.0.0/30")
    env = dict(os.environ, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD="1")
    daemons: list[subprocess.Popen[Any]] = []
    try:
        ends = [(ns_a, IP_A, WG_NET[0], f"wg{topo.id}a"), (ns_b, IP_B, WG_NET[1], f"wg{topo.id}b")]
        keys = [_wg_key(tmp, name) for _, _, _, name in ends]
        for ns, _, _, name in ends:
            daemons.append(popen(ns, ["wireguard-go", "-f", name], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL))
        for i, (ns, _, wg_ip, name) in enumerate(ends):
            peer_ns, peer_ip, peer_wg_ip, _ = ends[1 - i]
            deadline = time.monotonic() + WAIT_S
            while run(ns, ["ip", "link", "show", name], capture_output=True).returncode != 0:
                if time.monotonic() > deadline or daemons[i].poll() is not None:
                    raise RuntimeError(f"wireguard-go did not create {name}")
                time.sleep(0.05)
            run(ns, ["wg", "set", name, "private-key", keys[i][0], "listen-port", str(WG_PORT), "peer",
                     keys[1 - i][1], "allowed-ips", f"{peer_wg_ip}/32", "endpoint", f"{peer_ip}:{WG_PORT}"],
                check=True, timeout=10)
            run(ns, ["ip", "addr", "add", f"{wg_ip}/24", "dev", name], check=True, timeout=10)
            run(ns, ["ip", "link", "set", name, "up"], check=True, timeout=10)
        yield Target(ns_a, ns_b, WG_NET[1], WG_NET[1], daemons=daemons)
    finally:
        for d in daemons:
            _stop(d)


def _self_signed(tmp: str) -> tuple[str, str]:
    """A P-256 key and certificate for the server stunnel; the client pins it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealnet-bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_path, cert_path = os.path.join(tmp, "stunnel.key"), os.path.join(tmp, "stunnel.crt")
    with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@contextmanager
def stunnel(topo: Topology, tmp: str) -> Iterator[Target]:
    ns_a, ns_b, veth = topo.pair("198.18.0.0/30")
    key, cert = _self_signed(tmp)
    common = "foreground = yes\nsyslog = no\ndebug = 3\nsslVersionMin = TLSv1.3\noutput = {log}\n"
    server = common.format(log=os.path.join(tmp, "stunnel-server.log")) + f"cert = {cert}\nkey = {key}\n" + "".join(
        f"[s{port}]\naccept = {IP_B}:{tls}\nconnect = 127.0.0.1:{port}\n" for port, tls in TLS_PORTS.items())
    client = common.format(log=os.path.join(tmp, "stunnel-client.log")) + f"client = yes\nverifyPeer = yes\nCAfile = {cert}\n" + "".join(
        f"[c{port}]\naccept = 127.0.0.1:{port}\nconnect = {IP_B}:{tls}\n" for port, tls in TLS_PORTS.items())
    daemons: list[subprocess.Popen[Any]] = []
    try:
        for ns, text, name in ((ns_b, server, "server"), (ns_a, client, "client")):
            path = os.path.join(tmp, f"stunnel-{name}.conf")
            with open(path, "w") as f:
                f.write(text)
            daemons.append(popen(ns, ["stunnel4", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for ns, port in ((ns_a, TCP_PORT), (ns_b, TLS_PORTS[TCP_PORT])):
            deadline = time.monotonic() + WAIT_S
            while f":{port} " not in run(ns, ["ss", "-Hltn"], capture_output=True, text=True).stdout:
                if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                    raise RuntimeError(f"stunnel did not start (logs in {tmp})")
                time.sleep(0.05)
        yield Target(ns_a, ns_b, "127.0.0.1", "127.0.0.1", carries_udp=False, daemons=daemons)
    finally:
        for d in daemons:
            _stop(d)


# ------------------------------------------------------------------ the report


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base and value == value else "-"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def veth_table(rows: dict[str, dict[str, float]]) -> list[str]:
    base = rows.get(PLAIN, {})
    cols = [("udp_rtt_us", "UDP RTT us", 1), ("tcp_rtt_us", "TCP RTT us", 1), ("tcp1_gbit_s", "TCP 1 Gbit/s", 2),
            ("tcp4_gbit_s", "TCP 4 Gbit/s", 2), ("tcp1_cpu_ns_per_byte", "CPU ns/B (1)", 2),
            ("tcp1_retransmits", "retr (1)", 0)]
    lines = ["| configuration | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = []
        for key, _, digits in cols:
            value = r.get(key)
            ratio = "" if key.endswith("retransmits") or value is None else f" ({_ratio(value, base.get(key, 0))})"
            cells.append(_fmt(value, digits) + ratio)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def kernel_table(decision: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| per packet (BPF_PROG_TEST_RUN) | payload | plaintext ns | seal ns | open ns |", "|---|---|---|---|---|"]
    if "error" in decision:
        lines.append(f"| decision, {decision['rules']:,} rules | - | unavailable: {decision['error'][:120]} | | |")
    else:
        lines.append(f"| decision, {decision['rules']:,} rules (vs pass-only program) | 64 | "
                     f"{decision['baseline_ns']:.0f} | {decision['ns']:.0f} ({decision['ratio']:.2f}x) | - |")
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['suite']} | - | unavailable: {r['error'][:120]} | | |")
            continue
        lines.append(f"| {r['suite']} | {r['payload']} | {r['plaintext_ns']:.0f} | "
                     f"{r['seal_ns']:.0f} ({r['seal_ratio']:.1f}x) | {r['open_ns']:.0f} ({r['open_ratio']:.1f}x) |")
    return lines


def aims(rows: dict[str, dict[str, float]]) -> list[str]:
    sealed = {k: v for k, v in rows.items() if k.startswith("sealnet")}
    if not sealed:
        return ["no sealnet configuration ran"]
    plain_iface = rows.get(PLAIN_IFACE, {})
    best_rtt = min(sealed.items(), key=lambda kv: kv[1].get("udp_rtt_us", float("inf")))
    best_tcp = max(sealed.items(), key=lambda kv: kv[1].get("tcp1_gbit_s", 0))
    out = []
    added = best_rtt[1].get("udp_rtt_us", float("nan")) - plain_iface.get("udp_rtt_us", float("nan"))
    out.append(f"64-byte UDP round trip: {best_rtt[0]} adds {added:.1f} us over {PLAIN_IFACE} "
               f"(aim <= 3 us: {'met' if added <= 3 else 'missed'})")
    tcp = best_tcp[1].get("tcp1_gbit_s", 0)
    for peer, factor in (("stunnel", 1), ("wireguard-go", 5)):
        if peer in rows:
            want = factor * rows[peer].get("tcp1_gbit_s", float("nan"))
            out.append(f"TCP 1 stream: {best_tcp[0]} {tcp:.2f} Gbit/s vs {factor}x {peer} {want:.2f} "
                       f"({'met' if tcp >= want else 'missed'})")
    return out


def plot(path: Path, decision: dict[str, Any], kernel: list[dict[str, Any]], rows: dict[str, dict[str, float]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    names = list(rows)
    panels = [("udp_rtt_us", "64-byte UDP round trip (us)"), ("tcp_rtt_us", "64-byte TCP round trip (us)"),
              ("tcp1_gbit_s", "iperf3 TCP, 1 stream (Gbit/s)"), ("tcp4_gbit_s", "iperf3 TCP, 4 streams (Gbit/s)"),
              ("tcp1_cpu_ns_per_byte", "CPU ns per byte, 1 stream")]
    for ax, (key, title) in zip(axes.flat, panels):
        values = [rows[n].get(key, 0) or 0 for n in names]
        ax.barh(names, values, color=["#888" if n.startswith("plaintext") else "#3a7" if n.startswith("sealnet")
                                      else "#c63" for n in names])
        ax.set_title(title)
        ax.invert_yaxis()
        ax.tick_params(axis="y", labelsize=8)
    ax = axes.flat[5]
    ok = [r for r in kernel if "error" not in r]
    for suite in dict.fromkeys(r["suite"] for r in ok):
        mine = [r for r in ok if r["suite"] == suite]
        ax.plot([r["payload"] for r in mine], [r["seal_ns"] / 1000 for r in mine], marker="o", label=f"seal {suite}")
        ax.plot([r["payload"] for r in mine], [r["open_ns"] / 1000 for r in mine], marker="x", ls="--",
                label=f"open {suite}")
    ax.set_title(f"per packet (us); decision at {decision['rules']:,} rules: {decision.get('ns', float('nan')):.0f} ns")
    ax.set_xlabel("payload bytes")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (median; at least 3)")
    parser.add_argument("--seconds", type=int, default=3, help="iperf3 duration per run")
    parser.add_argument("--pings", type=int, default=2000, help="round trips per repetition")
    parser.add_argument("--samples", type=int, default=300, help="packets per seal/open repetition")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--only", default="", help="comma-separated configuration name prefixes (quick runs)")
    args = parser.parse_args()
    if min(args.reps, args.seconds, args.pings, args.samples) < 1:
        parser.error("--reps, --seconds, --pings and --samples must be positive")

    kernel: list[dict[str, Any]] = []
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sealnet-bench-") as tmp:
        node.STATE_DIR = os.path.join(tmp, "state")
        try:
            decision = decision_costs(args.reps)
        except Exception as exc:  # reported in the table, like a suite that is not there yet
            decision = {"rules": DECISION_RULES, "error": f"{type(exc).__name__}: {exc}"}
        for variant in variants():
            try:
                kernel += seal_open_costs(variant, args.samples, args.reps, os.path.join(tmp, "ledger"))
            except Exception as exc:  # reported in the table: a suite not there yet
                kernel.append({"suite": variant.label, "error": f"{type(exc).__name__}: {exc}"})
        broken = {r["suite"] for r in kernel if "error" in r}
        configs: list[tuple[str, Callable[[Topology], Any]]] = [
            (PLAIN, lambda topo: plaintext(topo, False)),
            (PLAIN_IFACE, lambda topo: plaintext(topo, True)),
            *[(f"sealnet {v.label}", lambda topo, v=v: sealnet(topo, v)) for v in variants() if v.label not in broken],
            ("wireguard-go", lambda topo: wireguard_go(topo, tmp)),
            ("stunnel", lambda topo: stunnel(topo, tmp)),
        ]
        wanted = [p.strip() for p in args.only.split(",") if p.strip()]
        for name, make in configs:
            if wanted and not any(name.startswith(p) for p in wanted):
                continue
            print(f"... {name}", file=sys.stderr, flush=True)
            with Topology() as topo, make(topo) as target:
                rows[name] = measure(target, args.reps, args.seconds, args.pings)

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    header = [f"# sealnet compared, {stamp}", "",
              f"Linux {os.uname().release}, {os.cpu_count()} CPUs, load average at the end {load[0]:.2f} "
              f"(the machine is shared); medians of {args.reps}; iperf3 {args.seconds} s; "
              f"ratios against {PLAIN} from this run (per packet: against plaintext on the same program).", ""]
    lines = header + kernel_table(decision, kernel) + [""] + veth_table(rows) + [""] + [f"- {a}" for a in aims(rows)]
    text = "\n".join(lines) + "\n"
    (out / f"compare-{stamp}.md").write_text(text)
    (out / f"compare-{stamp}.json").write_text(json.dumps(
        {"time": stamp, "reps": args.reps, "seconds": args.seconds, "load_average": load,
         "decision": decision, "per_packet": kernel, "veth": rows, "aims": aims(rows)}, indent=2))
    plot(out / f"compare-{stamp}.png", decision, kernel, rows)
    print(text)
    print(f"written: {out}/compare-{stamp}.{{md,json,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
