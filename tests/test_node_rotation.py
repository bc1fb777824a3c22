"""Finding 8: hitless rotation, receive before send, under traffic both ways.

Two nodes stream UDP to each other for `SOAK_SECONDS` while the keys rotate
`ROTATIONS` times in the order a fleet would: each node seals with the new
epoch at its own moment (a first, then b a moment later), the previous epoch
stays accepted for a grace period, then goes. No packet may be dropped for a
key, replay or tag reason, and every datagram sent must arrive unless a
kernel counted it dropped outside the data plane (a full socket buffer or
backlog on a busy machine: not a loss to rotation).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from sealnet.runtime import node, node_counters, seal_keys
from sealnet.runtime.netns import run_in_netns
from policies import compile_ok
from sealnet.compiler.build import build_object
from sealing import key_file_text, pair_key

pytestmark = pytest.mark.kernel

POLICY = '''policy "soak" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule ab: seal udp from a to b port 7000
rule ba: seal udp from b to a port 7000
'''
IP = {"a": "198.18.0.1", "b": "198.18.0.2"}
PORT = 7000
SOAK_SECONDS = 60.0
ROTATIONS = 5
RATE = 1000  # datagrams per second, each way
ROTATION_DROPS = ("seal_unknown_key_drop", "seal_replay_drop", "seal_bad_tag_drop", "seal_no_key_drop",
                  "seal_plaintext_drop", "seal_malformed_drop")


def _socket(ip: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ip, PORT))
    s.settimeout(0.2)
    return s


class Stream:
    """Send numbered datagrams at RATE until `stop`, and count what the other side receives."""

    def __init__(self, tx: socket.socket, rx: socket.socket, dst: str, stop: threading.Event) -> None:
        self.tx, self.rx, self.dst, self.stop = tx, rx, dst, stop
        self.sent = 0
        self.got: set[int] = set()
        self.threads = [threading.Thread(target=self._send, daemon=True),
                        threading.Thread(target=self._receive, daemon=True)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _send(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - start) * RATE)
            while self.sent < due:
                self.tx.sendto(self.sent.to_bytes(8, "big") + b"soak" * 8, (self.dst, PORT))
                self.sent += 1
            time.sleep(0.002)

    def _receive(self) -> None:
        # After `stop`, drain until everything arrived or the socket stayed quiet
        # for a second (a starved reader on a busy machine is not a lost packet).
        quiet_since: float | None = None
        hard_end: float | None = None
        while True:
            if self.stop.is_set():
                now = time.monotonic()
                hard_end = hard_end or now + 10.0
                if len(self.got) >= self.sent or now > hard_end or (quiet_since and now - quiet_since > 1.0):
                    return
            try:
                data = self.rx.recv(2048)
            except socket.timeout:
                quiet_since = quiet_since or time.monotonic()
                continue
            quiet_since = None
            self.got.add(int.from_bytes(data[:8], "big"))

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=10)


def _kernel_losses() -> int:
    """Datagrams this namespace's kernel dropped outside the data plane: full
    socket buffers, UDP errors, and drops on its links and backlogs."""
    with open("/proc/thread-self/net/snmp") as fh:
        rows = [line.split() for line in fh if line.startswith("Udp:")]
    udp = dict(zip(rows[0][1:], map(int, rows[1][1:])))
    lost = udp["InErrors"] + udp["RcvbufErrors"] + udp["SndbufErrors"]
    with open("/proc/thread-self/net/dev") as fh:
        for line in list(fh)[2:]:
            fields = line.split(":", 1)[1].split()
            lost += int(fields[3]) + int(fields[11])  # rx drop, tx drop
    with open("/proc/net/softnet_stat") as fh:  # per CPU, machine wide: an upper bound
        lost += sum(int(line.split()[1], 16) for line in fh)
    return lost


def _drops(iface: str, ns: str) -> dict[str, int]:
    state = node.read_state(iface, ns)
    assert state is not None
    counts = node_counters.verdict_counts(state)
    return {f"{d}:{v}": counts[d][v] for d in counts for v in ROTATION_DROPS if counts[d][v]}


def _keys(epoch: int, keys: dict[int, bytes]) -> seal_keys.KeyFile:
    return seal_keys.parse_key_file(key_file_text(None, {("a", "b"): {"current": (epoch, keys[epoch]),
                                                                       "next": (epoch + 1, keys[epoch + 1])}}))


def test_rotation_under_traffic_both_ways_loses_nothing(topology, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(node, "STATE_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(node, "DURABLE_DIR", str(tmp_path / "lib"))
    ns = {}
    ns["a"], ns["b"], veth = topology.pair("198.18.0.0/30")
    iface = {"a": veth.a, "b": veth.b}
    keys = {e: pair_key() for e in range(1, ROTATIONS + 3)}
    obj = build_object(compile_ok(POLICY))
    for side in "ab":
        node.load_object(obj, iface=iface[side], netns=ns[side], measurement="sha384:soak", policy="soak",
                         domain_ids={"a": 1, "b": 2}, keys=_keys(1, keys),
                         rules=[{"index": 0, "name": "ab", "action": "seal", "line": 4}])
    stop = threading.Event()
    sockets = {side: run_in_netns(ns[side], _socket, IP[side]) for side in "ab"}
    losses_before = {side: run_in_netns(ns[side], _kernel_losses) for side in "ab"}
    streams = [Stream(sockets["a"], sockets["b"], IP["b"], stop), Stream(sockets["b"], sockets["a"], IP["a"], stop)]
    epochs_seen: list[int] = []
    try:
        for s in streams:
            s.start()
        started = time.monotonic()
        interval = SOAK_SECONDS / (ROTATIONS + 1)
        for r in range(1, ROTATIONS + 1):
            time.sleep(max(0.0, started + r * interval - time.monotonic()))
            # Send switch, one node after the other: each already accepts the new epoch as `next`.
            for side in "ab":
                state = node.install_keys(iface[side], ns[side], _keys(r + 1, keys))
                epochs_seen.append(state.epochs["a->b"])
                time.sleep(0.5)
            time.sleep(interval / 2)  # the grace period: the previous epoch is still accepted
            for side in "ab":
                node.retire_previous_epochs(iface[side], ns[side])
        time.sleep(max(0.0, started + SOAK_SECONDS - time.monotonic()))
    finally:
        stop.set()
        for s in streams:
            s.join()
        losses = {side: run_in_netns(ns[side], _kernel_losses) - losses_before[side] for side in "ab"}
        for sock in sockets.values():
            sock.close()
        drops = {side: _drops(iface[side], ns[side]) for side in "ab"}
        for side in "ab":
            node.unload(iface[side], ns[side], open_sealed_flows=True)
    assert epochs_seen == [e for e in range(2, ROTATIONS + 2) for _ in "ab"]
    # Nothing is dropped for a key, replay or tag reason; any datagram that did
    # not arrive is one the kernels counted as dropped outside the data plane
    # (a busy shared machine overflows a backlog now and then), never a silent loss.
    assert drops == {"a": {}, "b": {}}
    for s, name in zip(streams, ("a->b", "b->a")):
        assert s.sent >= RATE * SOAK_SECONDS * 0.9, name
        missing = s.sent - len(s.got)
        assert missing <= losses["a"] + losses["b"], \
            f"{name}: {missing} of {s.sent} datagrams lost, the kernels counted {losses} drops outside the data plane"
