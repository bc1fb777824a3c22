"""sealnet.contracts.libbpf against the real kernel, libbpf.so.1 and clang-19.

Cost: about 2-3 s in total (three clang compiles, a few loads, one veth pair).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from sealnet.contracts import libbpf
from sealnet.runtime import netns as nsmod
from testbed import Topology, udp_socket

TC_ACT_OK = 0
TC_ACT_SHOT = 2
STAT_SEEN, STAT_DROPPED = 0, 1

CLASSIFIER_C = r"""
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define DROP_UDP_PORT 9
#define IP_FRAG_OFFSET_MASK 0x1fff

enum { STAT_SEEN, STAT_DROPPED, STAT_MAX };

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, STAT_MAX);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 key)
{
    __u64 *v = bpf_map_lookup_elem(&stats, &key);

    if (v)
        *v += 1;
}

SEC("tc")
int classify(struct __sk_buff *skb)
{
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip;
    struct udphdr *udp;
    __u32 ihl_bytes;

    count(STAT_SEEN);
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return TC_ACT_OK;
    ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
        return TC_ACT_OK;
    if (ip->frag_off & bpf_htons(IP_FRAG_OFFSET_MASK))
        return TC_ACT_OK; /* later fragments carry no UDP header */
    ihl_bytes = ip->ihl * 4;
    if (ihl_bytes < sizeof(*ip))
        return TC_ACT_OK;
    udp = (void *)ip + ihl_bytes;
    if ((void *)(udp + 1) > data_end)
        return TC_ACT_OK;
    if (udp->dest == bpf_htons(DROP_UDP_PORT)) {
        count(STAT_DROPPED);
        return TC_ACT_SHOT;
    }
    return TC_ACT_OK;
}

/* Adds one to the u32 in its context and returns 7: exercises SEC("syscall"). */
SEC("syscall")
int bump_ctx(__u32 *ctx)
{
    *ctx += 1;
    return 7;
}

char LICENSE[] SEC("license") = "GPL";
"""

# Reads the packet without a bounds check: the verifier must reject it.
INVALID_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int unchecked(struct __sk_buff *skb)
{
    return *(int *)(long)skb->data;
}

char LICENSE[] SEC("license") = "GPL";
"""

# Layout cross-check: compiled against libbpf's own headers.
LAYOUT_C = r"""
#include <stddef.h>
#include <stdio.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#define S(t) printf("size %s %zu\n", #t, sizeof(struct t));
#define O(t, f) printf("off %s %s %zu\n", #t, #f, offsetof(struct t, f));
int main(void)
{
@BODY@
    return 0;
}
"""


def _zero_key(i: int = 0) -> bytes:
    return struct.pack("=I", i)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_frame(proto: int, dport: int, payload: bytes = b"x" * 18, frag_off: int = 0) -> bytes:
    """Ethernet + IPv4 (+ UDP/TCP header with ``dport``) between 198.18.0.1 and .2."""
    if proto == socket.IPPROTO_UDP:
        l4 = struct.pack("!HHHH", 40000, dport, 8 + len(payload), 0) + payload
    else:
        l4 = struct.pack("!HHIIBBHHH", 40000, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
    total = 20 + len(l4)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, 1, frag_off, 64, proto, 0,
        socket.inet_aton("198.18.0.1"), socket.inet_aton("198.18.0.2"),
    )
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack("!H", 0x0800)
    return eth + hdr + l4


@pytest.fixture
def classifier(bpf_compile: Callable[..., bytes]) -> libbpf.BpfObject:
    obj = libbpf.BpfObject.open_memory(bpf_compile(CLASSIFIER_C, "classifier"), "classifier")
    try:
        obj.load()
        yield obj
    finally:
        obj.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------- layout


def test_struct_layouts_match_libbpf_headers(tmp_path: Path) -> None:
    """Every ctypes field offset and struct size equals what the C compiler sees."""
    clang = shutil.which("clang-19")
    if clang is None:
        pytest.skip("clang-19 not installed")
    lines = []
    for cname, cls in libbpf.STRUCTS.items():
        lines.append(f"S({cname})")
        for fname, _ in cls._fields_:
            if not fname.startswith("_") and fname != "gpl_compatible":  # stubs and bitfields
                lines.append(f"O({cname}, {fname})")
    src = tmp_path / "layout.c"
    src.write_text(LAYOUT_C.replace("@BODY@", "\n".join(lines)))
    exe = tmp_path / "layout"
    subprocess.run([clang, "-O0", "-o", str(exe), str(src)], check=True, capture_output=True, timeout=60)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    checked = 0
    for line in out.splitlines():
        parts = line.split()
        cls = libbpf.STRUCTS[parts[1]]
        if parts[0] == "size":
            assert ctypes.sizeof(cls) == int(parts[2]), parts[1]
            assert libbpf.EXPECTED_SIZES[parts[1]] == int(parts[2])
        else:
            assert getattr(cls, parts[2]).offset == int(parts[3]), f"{parts[1]}.{parts[2]}"
        checked += 1
    assert checked > 60


# --------------------------------------------------------------------------- load and run


@pytest.mark.kernel
def test_programs_and_maps_are_listed(classifier: libbpf.BpfObject) -> None:
    progs = {p.name: p for p in classifier.programs()}
    assert set(progs) == {"classify", "bump_ctx"}
    assert progs["classify"].section == "tc"
    assert progs["classify"].type == libbpf.ProgType.SCHED_CLS
    assert progs["bump_ctx"].type == libbpf.ProgType.SYSCALL
    assert all(p.fd >= 0 for p in progs.values())
    stats = classifier.map("stats")
    assert (stats.type, stats.key_size, stats.value_size, stats.max_entries) == (
        libbpf.MapType.PERCPU_ARRAY, 4, 8, 2,
    )
    assert stats.lookup_size == 8 * libbpf.possible_cpus()
    with pytest.raises(KeyError):
        classifier.program("nope")
    with pytest.raises(KeyError):
        classifier.map("nope")


@pytest.mark.kernel
def test_test_run_decides_and_counts(classifier: libbpf.BpfObject) -> None:
    prog = classifier.program("classify")
    cases = [
        (ipv4_frame(socket.IPPROTO_UDP, 9), TC_ACT_SHOT),
        (ipv4_frame(socket.IPPROTO_UDP, 53), TC_ACT_OK),
        (ipv4_frame(socket.IPPROTO_TCP, 9), TC_ACT_OK),
        (ipv4_frame(socket.IPPROTO_UDP, 9, frag_off=100), TC_ACT_OK),  # non-first fragment
        (ipv4_frame(socket.IPPROTO_UDP, 9)[:14 + 20 + 4], TC_ACT_OK),  # truncated UDP header
        (b"\xff" * 12 + b"\x08\x06" + b"\0" * 28, TC_ACT_OK),  # ARP
    ]
    for frame, expected in cases:
        result = prog.test_run(frame)
        assert result.retval == expected, frame.hex()
        assert result.data_out == frame  # the classifier never rewrites
        assert result.duration_ns >= 0
    stats = classifier.map("stats")
    assert stats.sum_percpu_u64(_zero_key(STAT_SEEN)) == len(cases)
    assert stats.sum_percpu_u64(_zero_key(STAT_DROPPED)) == 1

    repeated = prog.test_run(ipv4_frame(socket.IPPROTO_UDP, 9), repeat=50)
    assert repeated.retval == TC_ACT_SHOT
    assert stats.sum_percpu_u64(_zero_key(STAT_DROPPED)) == 51
    per_cpu = stats.lookup_percpu(_zero_key(STAT_SEEN))
    assert per_cpu is not None and len(per_cpu) == libbpf.possible_cpus()
    assert sum(int.from_bytes(v, "little") for v in per_cpu) == len(cases) + 50
    assert prog.info().run_cnt >= 0


@pytest.mark.kernel
def test_test_run_output_too_small_is_an_error(classifier: libbpf.BpfObject) -> None:
    frame = ipv4_frame(socket.IPPROTO_UDP, 53)
    with pytest.raises(libbpf.LibbpfError) as info:
        classifier.program("classify").test_run(frame, data_size_out=20)
    assert info.value.errno == errno.ENOSPC


@pytest.mark.kernel
def test_tag_matches_bpftool(classifier: libbpf.BpfObject) -> None:
    prog = classifier.program("classify")
    info = prog.info()
    assert len(info.tag) == 8 and info.tag != bytes(8)
    bpftool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    if not os.path.exists(bpftool):
        pytest.skip("bpftool not installed")
    shown = json.loads(
        subprocess.run([bpftool, "-j", "prog", "show", "id", str(info.id)], check=True,
                       capture_output=True, text=True, timeout=30).stdout
    )
    assert shown["tag"] == prog.tag().hex()
    assert shown["id"] == info.id


@pytest.mark.kernel
def test_syscall_program_runs_with_context(classifier: libbpf.BpfObject) -> None:
    result = classifier.program("bump_ctx").run_syscall(struct.pack("=I", 41))
    assert result.retval == 7
    assert struct.unpack("=I", result.ctx_out)[0] == 42


@pytest.mark.kernel
def test_invalid_program_raises_with_verifier_log(bpf_compile: Callable[..., bytes]) -> None:
    data = bpf_compile(INVALID_C, "invalid")
    before = _open_fds()
    for _ in range(3):  # repeated failures must not leak fds
        with libbpf.BpfObject.open_memory(data, "invalid") as obj:
            with pytest.raises(libbpf.BpfLoadError) as info:
                obj.load()
            assert obj.program("unchecked").fd == -1
    err = info.value
    assert err.errno == errno.EACCES
    assert "invalid access to packet" in err.verifier_log
    assert "processed" in err.verifier_log
    assert "unchecked" in str(err)  # names the failing program
    assert _open_fds() == before


@pytest.mark.kernel
def test_garbage_elf_is_rejected_at_open() -> None:
    with pytest.raises(libbpf.BpfLoadError) as info:
        libbpf.BpfObject.open_memory(b"\x7fELF not really an object", "junk")
    assert info.value.verifier_log == ""
    assert "junk" in str(info.value)
    with pytest.raises(libbpf.BpfLoadError):
        libbpf.BpfObject.open_memory(b"", "empty")


# --------------------------------------------------------------------------- maps


@pytest.mark.kernel
def test_hash_map_operations_and_freeze() -> None:
    with libbpf.create_map(libbpf.MapType.HASH, 4, 8, 8, "sn_test") as m:
        keys = [struct.pack("=I", i) for i in (3, 1, 2)]
        for i, k in enumerate(keys):
            m.update(k, struct.pack("=Q", 100 + i))
        assert sorted(m.keys()) == sorted(keys)
        assert m.lookup(keys[1]) == struct.pack("=Q", 101)
        assert m.lookup(struct.pack("=I", 99)) is None
        with pytest.raises(libbpf.LibbpfError) as exists:
            m.update(keys[0], bytes(8), libbpf.BPF_NOEXIST)
        assert exists.value.errno == errno.EEXIST
        assert m.delete(keys[0]) is True
        assert m.delete(keys[0]) is False
        assert dict(m.items()) == {keys[1]: struct.pack("=Q", 101), keys[2]: struct.pack("=Q", 102)}
        with pytest.raises(ValueError):
            m.lookup(b"\0")
        with pytest.raises(ValueError):
            m.update(keys[1], b"\0")
        m.freeze()
        with pytest.raises(libbpf.LibbpfError) as frozen:
            m.update(keys[1], bytes(8))
        assert frozen.value.errno == errno.EPERM
        assert m.lookup(keys[1]) == struct.pack("=Q", 101)  # reads still work


@pytest.mark.kernel
def test_percpu_update_broadcasts_short_value() -> None:
    with libbpf.create_map(libbpf.MapType.PERCPU_HASH, 4, 16, 4, "sn_pcpu") as m:
        m.update(_zero_key(), struct.pack("=QQ", 5, 7))
        assert m.percpu_u64_sums(_zero_key()) == [5 * libbpf.possible_cpus(), 7 * libbpf.possible_cpus()]
        assert m.percpu_u64_sums(_zero_key(1)) is None


# An array whose values carry a bpf_spin_lock (as the data plane's stream table does) and a
# program that rewrites every value under its lock, keeping all its counters equal.
LOCKED_C = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define LOCKED_ENTRIES 37
#define LOCKED_WORDS 64

struct locked_value {
    struct bpf_spin_lock lock;
    __u32 reserved;
    __u64 n[LOCKED_WORDS];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, LOCKED_ENTRIES);
    __type(key, __u32);
    __type(value, struct locked_value);
} locked SEC(".maps");

SEC("tc")
int bump_all(struct __sk_buff *skb)
{
    for (__u32 i = 0; i < LOCKED_ENTRIES; i++) {
        __u32 key = i;
        struct locked_value *v = bpf_map_lookup_elem(&locked, &key);

        if (!v)
            return 0;
        bpf_spin_lock(&v->lock);
        v->n[0] += 1;
#pragma unroll
        for (int w = 1; w < LOCKED_WORDS; w++)
            v->n[w] = v->n[0];
        bpf_spin_unlock(&v->lock);
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""
LOCKED_ENTRIES, LOCKED_WORDS = 37, 64
LOCKED_VALUE = struct.Struct(f"=II{LOCKED_WORDS}Q")


@pytest.fixture
def locked(bpf_compile: Callable[..., bytes]) -> libbpf.BpfObject:
    obj = libbpf.BpfObject.open_memory(bpf_compile(LOCKED_C, "locked"), "locked")
    try:
        obj.load()
        yield obj
    finally:
        obj.close()


@pytest.mark.kernel
def test_batch_lookup_returns_what_per_key_lookups_return(locked: libbpf.BpfObject) -> None:
    m = locked.map("locked")
    for i in range(LOCKED_ENTRIES):
        m.update(_zero_key(i), LOCKED_VALUE.pack(0, 0, i, i * 3, 1 << 40 | i, *[0xFFFFFFFFFFFFFFFF - i - w for w in range(61)]))
    locked.program("bump_all").test_run(ipv4_frame(17, 53), repeat=3)  # the kernel writes too
    per_key = [(k, m.lookup(k)) for k in map(_zero_key, range(LOCKED_ENTRIES))]
    assert all(v is not None for _, v in per_key)
    for per_call in (None, 1, 5, LOCKED_ENTRIES, LOCKED_ENTRIES + 10):  # 5: the last call ends on ENOENT
        for lock in (True, False):
            batch = m.lookup_batch(lock=lock, per_call=per_call)
            assert batch.count == LOCKED_ENTRIES, (per_call, lock)
            assert list(batch.items()) == per_key, (per_call, lock)
    with pytest.raises(ValueError):
        m.lookup_batch(per_call=0)


@pytest.mark.kernel
def test_batch_lookup_under_the_lock_never_sees_a_value_half_written(locked: libbpf.BpfObject) -> None:
    m, prog = locked.map("locked"), locked.program("bump_all")
    stop = time.monotonic() + 0.5
    writer = threading.Thread(target=lambda: [prog.test_run(ipv4_frame(17, 53), repeat=200)
                                              for _ in range(10_000) if time.monotonic() < stop])
    writer.start()
    reads = 0
    try:
        while time.monotonic() < stop and reads < 2_000:
            batch = m.lookup_batch(lock=True)
            for _, value in batch.items():
                n = LOCKED_VALUE.unpack(value)[2:]
                assert n[1:] == (n[0],) * (LOCKED_WORDS - 1), n[:4]
            reads += 1
    finally:
        writer.join(timeout=10)
    assert reads > 0 and not writer.is_alive()


@pytest.mark.kernel
def test_batch_lookup_of_an_empty_map_and_past_the_end() -> None:
    with libbpf.create_map(libbpf.MapType.HASH, 4, 8, 8, "sn_batch") as m:
        empty = m.lookup_batch()
        assert (empty.count, empty.keys, empty.values, list(empty.items())) == (0, b"", b"", [])
        for i in (5, 1, 7):
            m.update(_zero_key(i), struct.pack("=Q", 100 + i))
        assert sorted(m.lookup_batch().items()) == sorted(m.items())
        assert m.lookup_batch().count == 3
    with libbpf.create_map(libbpf.MapType.ARRAY, 4, 8, 4, "sn_batch_arr") as arr:
        with pytest.raises(libbpf.LibbpfError) as no_lock:
            arr.lookup_batch(lock=True)  # BPF_F_LOCK needs a bpf_spin_lock in the value
        assert no_lock.value.errno == errno.EINVAL


# --------------------------------------------------------------------------- TC attach


def _udp_burst(dst: str, port: int, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            s.sendto(b"sealnet-%d" % i, (dst, port))


def _drain(sock: socket.socket, want: int, deadline_s: float = 2.0) -> int:
    got = 0
    end = time.monotonic() + deadline_s
    while got < want and time.monotonic() < end:
        try:
            sock.recv(2048)
            got += 1
        except TimeoutError:
            pass
    return got


def _wait_counter(m: libbpf.Map, key: int, want: int, deadline_s: float = 2.0) -> int:
    end = time.monotonic() + deadline_s
    value = m.sum_percpu_u64(_zero_key(key))
    while value < want and time.monotonic() < end:
        time.sleep(0.01)
        value = m.sum_percpu_u64(_zero_key(key))
    return value


@pytest.mark.kernel
def test_tc_ingress_drops_real_traffic_in_netns(classifier: libbpf.BpfObject, topology: Topology) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    prog = classifier.program("classify")
    stats = classifier.map("stats")
    idx_b = veth.ifindex_b()

    att = nsmod.run_in_netns(ns_b, lambda: libbpf.attach_tc(prog.fd, idx_b, ingress=True, priority=1, handle=1))
    assert att.prog_id == prog.info().id
    assert nsmod.run_in_netns(ns_b, libbpf.query_tc, idx_b, True, 1, 1) == att.prog_id
    assert nsmod.run_in_netns(ns_b, libbpf.query_tc, idx_b, False, 1, 1) is None  # egress untouched
    with pytest.raises(libbpf.LibbpfError) as dup:  # same slot twice without replace
        nsmod.run_in_netns(ns_b, lambda: libbpf.attach_tc(prog.fd, idx_b, ingress=True))
    assert dup.value.errno == errno.EEXIST

    dropped_sock = nsmod.run_in_netns(ns_b, udp_socket, veth.ip_b, 9, 0.05)
    passed_sock = nsmod.run_in_netns(ns_b, udp_socket, veth.ip_b, 7000, 0.05)
    try:
        nsmod.run_in_netns(ns_a, _udp_burst, veth.ip_b, 7000, 5)
        assert _drain(passed_sock, 5) == 5
        nsmod.run_in_netns(ns_a, _udp_burst, veth.ip_b, 9, 20)
        assert _wait_counter(stats, STAT_DROPPED, 20) == 20
        assert _drain(dropped_sock, 1, deadline_s=0.2) == 0
        assert stats.sum_percpu_u64(_zero_key(STAT_SEEN)) >= 25  # plus ARP/ND

        nsmod.run_in_netns(ns_b, libbpf.detach_tc, idx_b, True, 1, 1)
        assert nsmod.run_in_netns(ns_b, libbpf.query_tc, idx_b, True, 1, 1) is None
        nsmod.run_in_netns(ns_a, _udp_burst, veth.ip_b, 9, 3)
        assert _drain(dropped_sock, 3) == 3
        assert stats.sum_percpu_u64(_zero_key(STAT_DROPPED)) == 20
        nsmod.run_in_netns(ns_b, libbpf.destroy_clsact, idx_b)
        nsmod.run_in_netns(ns_b, libbpf.destroy_clsact, idx_b)  # idempotent
    finally:
        dropped_sock.close()
        passed_sock.close()


@pytest.mark.kernel
def test_tc_errors_are_readable() -> None:
    with pytest.raises(libbpf.LibbpfError) as info:
        libbpf.attach_tc(-1, 0x7FFFFFF0, ingress=True)
    assert info.value.errno in (errno.ENODEV, errno.EINVAL, errno.EBADF)
    assert "ifindex" in str(info.value)
    with pytest.raises(ValueError):
        libbpf.attach_tc(0, 1, ingress=True, priority=0)


@pytest.mark.kernel
def test_autoload_and_object_lifetime(bpf_compile: Callable[..., bytes]) -> None:
    obj = libbpf.BpfObject.open_memory(bpf_compile(CLASSIFIER_C, "classifier"), "classifier")
    with obj:
        obj.set_autoload("bump_ctx", False)
        obj.load()
        assert obj.program("bump_ctx").fd == -1
        assert obj.program("classify").fd >= 0
        stats = obj.map("stats")
        alias = libbpf.Map.from_fd(stats.fd)  # layout read back from the kernel
        assert (alias.name, alias.type, alias.key_size, alias.value_size, alias.max_entries) == (
            "stats", libbpf.MapType.PERCPU_ARRAY, 4, 8, 2,
        )
        with pytest.raises(libbpf.LibbpfError):
            obj.set_autoload("bump_ctx", True)  # too late
    # Closed object: its programs and maps refuse to act on stale fd numbers.
    assert stats.fd == -1
    with pytest.raises(libbpf.LibbpfError):
        stats.lookup(_zero_key())
    with pytest.raises(libbpf.LibbpfError):
        obj.programs()


@pytest.mark.kernel
def test_lsm_probe_and_attach_errors_are_readable(classifier: libbpf.BpfObject) -> None:
    with pytest.raises(libbpf.LibbpfError) as info:
        libbpf.probe_lsm_hook("no_such_hook")  # no bpf_lsm_no_such_hook in the kernel's BTF
    assert "find LSM hook no_such_hook" in str(info.value)
    with pytest.raises(libbpf.LibbpfError) as info:
        libbpf.attach_lsm(classifier.program("classify").fd)  # a TC program has no LSM hook
    assert "attach BPF LSM program" in str(info.value)
    assert classifier.program("classify").autoload and not classifier.program("bump_ctx").fd < 0
