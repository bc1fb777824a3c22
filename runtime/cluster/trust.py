"""Where a cluster's nodes get their trust from: static key files, or
simulated TEEs (this machine has none) attesting to the control planes; and
the keys an auditor of the wan needs to open what it captured."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re

from sealnet.compiler.frontend import compile_text
from sealnet.compiler.ir import Policy, TeeKind
from sealnet.contracts.bundle import load_bundle
from sealnet.contracts.signing import load_public
from sealnet.runtime import control_client
from sealnet.runtime.attest import sim
from sealnet.runtime.attest.sim import SimPlatform
from sealnet.runtime.attest.verifier import VerifierConfig
from sealnet.runtime.cluster import topology
from sealnet.runtime.cluster.state import ClusterError, ClusterState
from sealnet.runtime.cluster.topology import ROLE_CONTROL, ROLE_NODE
from sealnet.runtime.netns import run_in_netns
from sealnet.runtime.seal_keys import KeyFile, format_key_file, load_key_file
from sealnet.runtime.seal_wire import PAIR_KEY_LEN

# A simulated TEE's launch measurement when the policy lists none for its domain.
SIM_LAUNCH = "sha384:" + hashlib.sha384(b"sealnet simulated launch (no TEE)").hexdigest()


def tee_domains(policy: Policy) -> list[str]:
    return [d.name for d in policy.domains if d.tee is not TeeKind.NONE]


def write_static_keys(state: ClusterState, policy: Policy) -> dict[str, str]:
    """One key file per TEE domain holding a fresh key for every pair it is
    part of; mode 0600, in the state directory. Returns domain -> path."""
    domains = tee_domains(policy)
    pair_keys = {(a, b): os.urandom(PAIR_KEY_LEN) for i, a in enumerate(domains) for b in domains[i + 1:]}
    keys_dir = state.file("keys")
    os.makedirs(keys_dir, mode=0o700, exist_ok=True)
    paths: dict[str, str] = {}
    for domain in domains:
        mine = {pair: {"current": (1, key)} for pair, key in pair_keys.items() if domain in pair}
        path = os.path.join(keys_dir, f"{domain}.keys")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(format_key_file(None, mine))
        paths[domain] = path
    return paths


def simulated_policy_text(text: str, policy: Policy, layout: topology.Layout) -> str:
    """The policy with every TEE domain declared `tee sim`, accepting the
    simulated launch measurement, with its control plane's address: what an
    authority signs for a lab without TEEs. Everything else is unchanged."""
    out = text
    for domain in policy.domains:
        if domain.tee is TeeKind.NONE:
            continue
        match = re.search(rf"\bdomain\s+{re.escape(domain.name)}\s*\{{([^}}]*)\}}", out)
        if match is None:
            raise ClusterError(f"{policy.file}: cannot find the block of domain {domain.name!r} to simulate its TEE")
        body = re.sub(r"\btee\s+[A-Za-z0-9_-]+", "tee sim", match.group(1), count=1)
        if not domain.measurements:
            body = body.rstrip() + f'; measurement "{SIM_LAUNCH}" '
        if not domain.control_plane:
            cp = layout.by_domain(domain.name, ROLE_CONTROL)[0]
            body = body.rstrip() + f"; control {cp.address}:{cp.port} "
        out = out[: match.start(1)] + body + out[match.end(1) :]
    return out


def simulated_policy(state: ClusterState, policy: Policy) -> tuple[str, Policy]:
    assert state.layout is not None
    with open(state.policy) as fh:
        text = simulated_policy_text(fh.read(), policy, state.layout)
    path = state.file("policy.sim.policy")
    with open(path, "w") as fh:
        fh.write(text)
    simulated, diagnostics = compile_text(text, path)
    if simulated is None:
        first = next(iter(diagnostics), None)
        raise ClusterError(f"{path}: the policy with simulated TEEs does not compile" + (f": {first}" if first else ""))
    return path, simulated


def sim_launch(policy: Policy, domain: str) -> str:
    """The launch measurement a simulated TEE reports: the first one the
    policy accepts for the domain (a TEE launched from an approved image),
    else a fixed, recognisable stand-in."""
    accepted = policy.domain(domain).measurements
    return accepted[0] if accepted else SIM_LAUNCH


def new_platform(path: str) -> str:
    """A simulated platform key pair, as `sealnet attest sim-keygen` writes it; returns the key's path."""
    key = SimPlatform.generate(bytes(48))
    key.save(path)
    with open(path + ".pub", "wb") as fh:
        fh.write(key.public_pem())
    return path


def audit_keys(state: ClusterState) -> list[KeyFile]:
    """The pair keys an auditor of the wan needs to open what it captured:
    the static key files, or (attested keys) one release per TEE domain that
    the auditor obtains exactly as a node of that domain would, attesting
    from inside one of its nodes' namespaces with the domain's simulated node
    platform key."""
    keys_dir = state.file("keys")
    if state.key_source == "static":
        return [load_key_file(os.path.join(keys_dir, n)) for n in sorted(os.listdir(keys_dir))]
    assert state.layout is not None and state.bundle and state.authority_public
    with open(state.bundle, "rb") as fh:
        verified = load_bundle(fh.read(), load_public(state.authority_public))
    simulated = {d["name"]: d for d in verified.manifest.get("domains", [])}
    controls = {h.domain: h for h in state.layout.hosts if h.role == ROLE_CONTROL}
    trusted = set()
    for d in controls:
        path = state.file("cp", f"{d}.platform.pub")
        with open(path, "rb") as fh:
            trusted.add(sim.public_fingerprint(sim.load_public(fh.read(), path)))
    releases = []
    for domain, cp in sorted(controls.items()):
        launch = simulated[domain]["measurements"][0]
        platform = sim.load_platform(state.file("cp", f"{domain}.nodes.platform"), bytes.fromhex(launch[7:]))
        inside = state.layout.by_domain(domain, ROLE_NODE)[0].netns

        def fetch() -> KeyFile:
            release = asyncio.run(control_client.attest(
                f"http://{cp.address}:{cp.port}", domain=domain, manifest=verified.manifest,
                bundle_measurement=verified.measurement, attester=platform.attest,
                verifier=VerifierConfig(sim_platforms=frozenset(trusted))))
            return release.key_file()

        releases.append(run_in_netns(inside, fetch))
    return releases
