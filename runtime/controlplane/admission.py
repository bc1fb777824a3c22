"""Who may hold keys: a peer's verified evidence judged against the signed bundle.

The same judgement runs on every side of MAKE: the control plane judges a
node or a peer control plane, a node judges its control plane. A peer passes
when (in this order, each a refusal code in the audit log):

  domain              it claims a domain of the signed policy (and, for a node, this control plane's)
  tee                 its evidence comes from the TEE kind that domain declares
  launch_measurement  its launch measurement is one the policy accepts for that domain
  bundle_measurement  its runtime log ends with the bundle measurement of the signed bundle we hold
"""

from __future__ import annotations

import hmac
from typing import Any

from sealnet.runtime.attest.evidence import Verified
from sealnet.runtime.make import MakeError


def domains(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in manifest.get("domains", [])}


def with_control_plane(manifest: dict[str, Any]) -> set[str]:
    return {d["name"] for d in manifest.get("domains", []) if d.get("control_plane")}


def _in(value: str, accepted: list[str]) -> bool:
    found = False
    for candidate in accepted:  # every candidate compared, no early exit
        found |= hmac.compare_digest(value.encode(), str(candidate).encode())
    return found


def admit(manifest: dict[str, Any], bundle_measurement: str, claimed_domain: str, peer: Verified, *,
          role: str, own_domain: str) -> dict[str, Any]:
    """The peer's domain entry when it may hold keys; MakeError with the refusal code otherwise."""
    known = domains(manifest)
    domain = known.get(claimed_domain)
    if domain is None:
        raise MakeError("domain", f"domain {claimed_domain[:64]!r} is not in the signed policy")
    if role == "node" and claimed_domain != own_domain:
        raise MakeError("domain", f"a node of domain {claimed_domain!r} asked the control plane of {own_domain!r}")
    if role == "controlplane":
        if claimed_domain == own_domain:
            raise MakeError("domain", "a control plane cannot federate with its own domain")
        if claimed_domain not in with_control_plane(manifest):
            raise MakeError("domain", f"domain {claimed_domain!r} has no control plane in the signed policy")
    tee = domain.get("tee")
    if tee == "none":
        raise MakeError("tee", f"domain {claimed_domain!r} declares no TEE; its nodes hold no keys")
    if peer.tee != tee:
        raise MakeError("tee", f"domain {claimed_domain!r} runs on {tee}, the evidence is {peer.tee}")
    accepted = list(domain.get("measurements") or [])
    if not accepted:
        raise MakeError("launch_measurement", f"the policy accepts no launch measurement for domain {claimed_domain!r}")
    if not _in(peer.launch_measurement, accepted):
        raise MakeError("launch_measurement", f"launch measurement {peer.launch_measurement[:23]}... is not "
                                              f"accepted for domain {claimed_domain!r}")
    running = peer.bundle_measurement
    if running is None:
        raise MakeError("bundle_measurement", "the runtime log records no bundle")
    if not hmac.compare_digest(running.encode(), bundle_measurement.encode()):
        raise MakeError("bundle_measurement", f"runs bundle {running[:23]}..., the signed bundle is "
                                              f"{bundle_measurement[:23]}...")
    return domain
