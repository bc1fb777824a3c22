"""Issue 11, finding 10: a packet socket with PACKET_QDISC_BYPASS (or an AF_XDP socket) on a
sealing node sends past TC egress, in plaintext, counted nowhere. The bypass guard (BPF LSM,
runtime/node_guard.py) refuses both in the namespace of each sealing load; where it cannot run,
a sealing load fails closed unless the operator accepts the risk by name.

Tests marked bpf_lsm need a kernel that runs BPF LSM programs (conftest.py); the fail-closed
test and the namespace cookie test run everywhere. Every test unloads what it loaded; the
topology fixture deletes the namespaces.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from sealnet.compiler.build import build_object
from sealnet.contracts import abi
from sealnet.runtime import node, node_guard
from sealnet.runtime.netns import ifindex, run_in_netns
from policies import compile_ok
from testbed import AF_XDP, PACKET_QDISC_BYPASS, SOL_PACKET, inject, qdisc_bypass_socket, xdp_socket

pytestmark = pytest.mark.kernel

POLICY = '''policy "guard" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule plain: allow plaintext udp from a to b port 9999
rule ab: seal from a to b
rule ba: seal from b to a
'''
PLAINTEXT_POLICY = '''policy "open" version 1
domain a { tee tdx; nodes 198.18.0.1/32 }
domain b { tee tdx; nodes 198.18.0.2/32 }
rule ab: allow plaintext udp from a to b port 9999
'''
_objects: dict[str, bytes] = {}


def _object(source: str = POLICY) -> bytes:
    if source not in _objects:
        _objects[source] = build_object(compile_ok(source))
    return _objects[source]


def _rules(source: str) -> list[dict[str, Any]]:
    return [{"index": i, "name": r.name, "action": r.action.value} for i, r in enumerate(compile_ok(source).rules)]


@pytest.fixture
def state_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(node, "STATE_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(node, "DURABLE_DIR", str(tmp_path / "lib"))
    return tmp_path


def _load(iface: str, ns: str, source: str = POLICY, **kw: Any) -> node.NodeState:
    return node.load_object(_object(source), iface=iface, netns=ns, measurement="sha384:test", policy="guard",
                            rules=_rules(source), **kw)


def _refused(ns: str, make: Any) -> bool:
    """Does making this socket in `ns` fail with EPERM? (A socket made is closed again.)"""
    try:
        run_in_netns(ns, make).close()
    except PermissionError:
        return True
    return False


def _bind_xsk(sock: socket.socket, iface_index: int) -> int:
    """bind(2) an AF_XDP socket (struct sockaddr_xdp; Python's bind() knows no AF_XDP): the errno."""
    addr = struct.pack("=HHIII", AF_XDP, 0, iface_index, 0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    ret = libc.bind(sock.fileno(), ctypes.c_char_p(addr), len(addr))
    return 0 if ret == 0 else ctypes.get_errno()


def _links(pin_dir: str) -> list[str]:
    return sorted(f for f in os.listdir(pin_dir) if f.endswith(node_guard.LINK_SUFFIX))


# ------------------------------------------------------------------ where the guard cannot run


def test_a_sealing_load_where_the_guard_cannot_run_fails_closed_unless_the_risk_is_accepted(
        topology, state_dir, tmp_path, monkeypatch, capsys) -> None:
    from sealnet.compiler.cli import main as policyc
    from sealnet.runtime.cli import main as sealnet

    # A kernel without BPF LSM, whatever this one is; and no risk accepted by the environment.
    lsm_list = tmp_path / "lsm"
    lsm_list.write_text("lockdown,capability,landlock\n")
    monkeypatch.setattr(node_guard, "LSM_LIST", str(lsm_list))
    monkeypatch.delenv(node.ALLOW_QDISC_BYPASS_ENV, raising=False)
    ns_a, _, veth = topology.pair("198.18.0.0/30")
    auth = tmp_path / "auth.key"
    assert policyc(["keygen", str(auth)]) == 0
    bundles = {}
    for name, source in (("seal", POLICY), ("open", PLAINTEXT_POLICY)):
        (tmp_path / f"{name}.policy").write_text(source)
        bundles[name] = tmp_path / f"{name}.bundle"
        assert policyc(["compile", str(tmp_path / f"{name}.policy"), "-o", str(bundles[name]),
                        "--sign-key", str(auth)]) == 0
    where = ["--iface", veth.a, "--netns", ns_a]
    load = ["node", "load", "--trust", f"{auth}.pub", *where]
    capsys.readouterr()

    assert sealnet([*load, str(bundles["seal"])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("sealnet: error:"), err
    assert "BPF LSM is not active" in err[0] and "--allow-qdisc-bypass" in err[0] and "PACKET_QDISC_BYPASS" in err[0]
    assert node.attached_program_ids(veth.a, ns_a) == {abi.EGRESS_PROGRAM: None, abi.INGRESS_PROGRAM: None}
    assert node.read_state(veth.a, ns_a) is None  # nothing changed

    assert sealnet([*load, str(bundles["seal"]), "--allow-qdisc-bypass"]) == 0
    try:
        assert "warning: qdisc bypass NOT refused" in capsys.readouterr().out
        assert sealnet(["node", "status", *where, "--format", "json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["qdisc_bypass_guard"] == node_guard.ACCEPTED_RISK and status["guard_attached"] is False
        assert status["enforcing"] is True
        assert sealnet(["node", "status", *where]) == 0
        assert "qdisc bypass: NOT refused" in capsys.readouterr().out
        assert not _refused(ns_a, qdisc_bypass_socket)  # the accepted risk is real: nothing refuses it
        # A policy that seals nothing has nothing to guard: it loads without the flag.
        assert sealnet([*load, str(bundles["open"])]) == 0
        state = node.read_state(veth.a, ns_a)
        assert state is not None and state.qdisc_bypass_guard == node_guard.NOT_NEEDED
    finally:
        assert sealnet(["node", "unload", *where, "--open-sealed-flows"]) == 0


def test_namespace_cookies_name_one_namespace_each(topology) -> None:
    ns_a, ns_b, _ = topology.pair("198.18.0.0/30")
    a, b, here = node_guard.netns_cookie(ns_a), node_guard.netns_cookie(ns_b), node_guard.netns_cookie(None)
    assert len({a, b, here}) == 3 and 0 not in (a, b, here)
    assert node_guard.netns_cookie(ns_a) == a
    # The same number the kernel reports for a socket made there (independently: getsockopt in ns_a).
    sock = run_in_netns(ns_a, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        assert struct.unpack("=Q", sock.getsockopt(socket.SOL_SOCKET, node_guard.SO_NETNS_COOKIE, 8))[0] == a


# ------------------------------------------------------------------ where it runs


@pytest.mark.bpf_lsm
def test_the_guard_refuses_qdisc_bypass_and_af_xdp_in_each_sealing_namespace_only(topology, state_dir) -> None:
    ns_a, ns_b, veth = topology.pair("198.18.0.0/30")
    ns_c = topology.netns("c")  # no data plane
    early_xsk = run_in_netns(ns_a, xdp_socket)  # made before the load
    early_packet = run_in_netns(ns_a, socket.socket, socket.AF_PACKET, socket.SOCK_RAW)
    loaded: list[tuple[str, str]] = []
    try:
        state = _load(veth.a, ns_a)
        loaded.append((veth.a, ns_a))
        assert state.qdisc_bypass_guard == node_guard.LSM
        assert _links(state.pin_dir) == sorted(n + node_guard.LINK_SUFFIX for n in abi.GUARD_PROGRAMS)
        assert _refused(ns_a, qdisc_bypass_socket) and _refused(ns_a, xdp_socket)
        assert not _refused(ns_c, qdisc_bypass_socket) and not _refused(ns_c, xdp_socket)
        # The old way to replay from a's side is refused there: the data plane cannot be skipped.
        with pytest.raises(PermissionError):
            run_in_netns(ns_a, inject, veth.a, [b"\xff" * 60])
        # The socket's namespace counts, not the caller's: a's socket, configured from c.
        with pytest.raises(PermissionError):
            run_in_netns(ns_c, early_packet.setsockopt, SOL_PACKET, PACKET_QDISC_BYPASS, 1)
        assert _bind_xsk(early_xsk, ifindex(veth.a, ns_a)) == errno.EPERM  # made before, bound after: refused

        # A second sealing load, in b: each namespace is guarded by its own links.
        _load(veth.b, ns_b)
        loaded.append((veth.b, ns_b))
        assert _refused(ns_b, qdisc_bypass_socket)
        # A reload of a swaps its links with its pins: still refused, and no old link left behind.
        reloaded = _load(veth.a, ns_a)
        assert reloaded.pin_dir != state.pin_dir and not os.path.exists(state.pin_dir)
        assert len(_links(reloaded.pin_dir)) == len(abi.GUARD_PROGRAMS)
        assert _refused(ns_a, qdisc_bypass_socket) and _refused(ns_a, xdp_socket)

        # Unloading a opens a, and only a.
        node.unload(veth.a, ns_a, open_sealed_flows=True)
        loaded.remove((veth.a, ns_a))
        assert not _refused(ns_a, qdisc_bypass_socket) and not _refused(ns_a, xdp_socket)
        assert _refused(ns_b, qdisc_bypass_socket) and _refused(ns_b, xdp_socket)
        node.unload(veth.b, ns_b, open_sealed_flows=True)
        loaded.remove((veth.b, ns_b))
        assert not _refused(ns_b, qdisc_bypass_socket)
    finally:
        early_xsk.close()
        early_packet.close()
        for iface, ns in loaded:
            node.unload(iface, ns, open_sealed_flows=True)


@pytest.mark.bpf_lsm
def test_a_plaintext_only_policy_attaches_no_guard_and_status_shows_the_guard(topology, state_dir, capsys) -> None:
    from sealnet.runtime.commands.node import status_document

    ns_a, _, veth = topology.pair("198.18.0.0/30")
    try:
        state = _load(veth.a, ns_a, PLAINTEXT_POLICY)
        assert state.qdisc_bypass_guard == node_guard.NOT_NEEDED and _links(state.pin_dir) == []
        assert not _refused(ns_a, qdisc_bypass_socket)
        state = _load(veth.a, ns_a)  # now a sealing policy, in place
        status = status_document(veth.a, ns_a)
        assert status["qdisc_bypass_guard"] == node_guard.LSM and status["guard_attached"] and status["enforcing"]
        os.unlink(node_guard.link_path(state.pin_dir, "guard_sockopt"))  # a link lost: status says so
        status = status_document(veth.a, ns_a)
        assert not status["guard_attached"] and not status["enforcing"]
    finally:
        node.unload(veth.a, ns_a, open_sealed_flows=True)
