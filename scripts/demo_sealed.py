"""Demo: sealed traffic between two nodes in network namespaces (root only).

Compiles and signs a two-domain policy, loads it on both ends of a veth pair
with `sealnet node load --keys`, sends UDP messages, and shows the same
message as the application wrote it, as it crossed the wire (a packet socket
on the receiving veth) and as the receiver read it. Everything it creates is
deleted at the end.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # testbed, packets

from sealnet.compiler.cli import main as policyc  # noqa: E402
from sealnet.runtime import node, node_guard  # noqa: E402
from sealnet.runtime.cli import main as sealnet  # noqa: E402
from sealnet.runtime.netns import run_in_netns  # noqa: E402
from testbed import Topology, tap, udp_socket  # noqa: E402
from sealnet.runtime.seal_keys import format_key_file  # noqa: E402
from sealnet.runtime.seal_wire import PAIR_KEY_LEN  # noqa: E402

POLICY = '''policy "demo" version 1
domain hospital { tee sev-snp; nodes 198.18.0.1/32 }
domain lab      { tee tdx;     nodes 198.18.0.2/32 }
workflow calls {
  source: hospital port 7001
  intake: lab      port 7000
  source -> intake udp
  intake -> source udp
}
rule records: seal udp from hospital to calls.intake
rule replies: seal udp from lab to calls.source
default deny
'''
MESSAGE = b"patient 4711: variant calls chr7:117559590 G>A"


def main() -> int:
    if os.geteuid() != 0:
        print("sealed traffic demo skipped: it needs root (BPF and network namespaces)")
        return 0
    with tempfile.TemporaryDirectory() as tmp, Topology() as topo:
        node.STATE_DIR = os.path.join(tmp, "state")
        policy, auth, bundle = Path(tmp, "demo.policy"), Path(tmp, "authority.key"), Path(tmp, "demo.bundle")
        policy.write_text(POLICY)
        pair_key = os.urandom(PAIR_KEY_LEN)
        key_files = []
        for sender in (101, 202):  # one sender id per node: nonces never repeat across them
            path = Path(tmp, f"node{sender}.keys")
            path.write_text(format_key_file(sender, {("hospital", "lab"): {"current": (1, pair_key)}}))
            path.chmod(0o600)  # the node refuses key files others can read
            key_files.append(path)
        print("$ policyc keygen / compile (signed bundle)")
        if policyc(["keygen", str(auth)]) or policyc(["compile", str(policy), "-o", str(bundle),
                                                       "--sign-key", str(auth)]):
            return 1
        ns_a, ns_b, veth = topo.pair("198.18.0.0/30")
        loaded = []
        # A sealing load fails closed where the bypass guard (BPF LSM) cannot run; the demo says so
        # and accepts the risk by name, as an operator would have to.
        unguarded = node_guard.unavailable_reason()
        accept = ["--allow-qdisc-bypass"] if unguarded else []
        if unguarded:
            print(f"note: {unguarded}: the demo loads with --allow-qdisc-bypass")
        try:
            for iface, ns, keys in ((veth.a, ns_a, key_files[0]), (veth.b, ns_b, key_files[1])):
                print(f"$ sealnet node load demo.bundle --iface {iface} --netns {ns} --keys {keys.name}"
                      + "".join(f" {a}" for a in accept))
                if sealnet(["node", "load", str(bundle), "--iface", iface, "--netns", ns,
                            "--trust", f"{auth}.pub", "--keys", str(keys), *accept]):
                    return 1
                loaded.append((iface, ns))
            tap_sock = run_in_netns(ns_b, tap, veth.b)
            server = run_in_netns(ns_b, udp_socket, "198.18.0.2", 7000)
            client = run_in_netns(ns_a, udp_socket, "198.18.0.1", 0)
            with tap_sock, server, client:
                client.sendto(MESSAGE, ("198.18.0.2", 7000))
                received, _ = server.recvfrom(2048)
                wire = b""
                for _ in range(10):  # bounded: skip ARP and anything else on the tap
                    frame = tap_sock.recv(2048)
                    if frame[12:14] == b"\x08\x00" and frame[23] == 17:
                        wire = frame
                        break
            print(f"\napplication sent  ({len(MESSAGE)} bytes): {MESSAGE.decode()}")
            print(f"on the wire       ({len(wire) - 14} byte IPv4 packet, seal header and tag included):")
            for at in range(14, len(wire), 32):
                print("    " + wire[at:at + 32].hex(" "))
            print(f"receiver read     ({len(received)} bytes): {received.decode(errors='replace')}")
            print(f"plaintext on the wire: {'YES' if MESSAGE[:16] in wire else 'no'}\n")
            print(f"$ sealnet node status --iface {veth.b} --netns {ns_b}")
            sealnet(["node", "status", "--iface", veth.b, "--netns", ns_b])
            return 0 if received == MESSAGE and MESSAGE[:16] not in wire else 1
        finally:
            for iface, ns in loaded:
                node.unload(iface, ns, open_sealed_flows=True)  # the namespaces go away with the demo


if __name__ == "__main__":
    sys.exit(main())
