"""MAKE over HTTP, client side: a node (or a peer control plane) attests and receives its keys.

    release = await attest(url, manifest=..., bundle_measurement=..., domain=..., attester=..., verifier=...)
    keys = release.key_file()            # a seal_keys.KeyFile: seal_keys.install(handles, keys, ...)
    release.sender                       # the sender id the control plane assigned to this load

The control plane is judged exactly as it judges us (controlplane/admission):
its domain must be ours, its evidence from our domain's TEE with an accepted
launch measurement, running the same signed bundle. Request bodies and the
schema are in docs/make.md ("Transport").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from sealnet.runtime.attest.evidence import BUNDLE_REGISTER, LogEntry
from sealnet.runtime.attest.verifier import VerifierConfig, verify
from sealnet.runtime.controlplane.admission import admit
from sealnet.runtime.make import Attester, Client, MakeError, Session
from sealnet.runtime.seal_keys import KeyFile, parse_key_file

MAX_BODY = 64 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=3)


class ControlError(Exception):
    """The control plane refused us, or could not be trusted; `code` as in the audit log."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Release:
    payload: dict[str, Any]
    session: Session

    @property
    def sender(self) -> int:
        return int(self.payload["keys"]["sender"])

    @property
    def simulated(self) -> bool:
        return bool(self.payload.get("simulated"))

    def key_file(self) -> KeyFile:
        return parse_key_file(json.dumps(self.payload["keys"]), "<control plane release>")


async def _post(http: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(url, json=body) as resp:
        raw, total = bytearray(), 0
        while chunk := await resp.content.read(65536):  # a read returns what has arrived: read to the end
            total += len(chunk)
            if total > MAX_BODY:
                raise ControlError("oversize", f"{url}: reply larger than {MAX_BODY} bytes")
            raw += chunk
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ControlError("malformed", f"{url}: HTTP {resp.status}, reply is not JSON") from None
        if not isinstance(doc, dict):
            raise ControlError("malformed", f"{url}: reply is not a JSON object")
        if doc.get("type") == "refused":
            raise ControlError(str(doc.get("code"))[:32], f"refused: {str(doc.get('reason'))[:300]}")
        return doc


async def _abort(http: aiohttp.ClientSession, base: str, server_hello: Any, exc: MakeError) -> None:
    """Tell the control plane why we gave up, for its audit log (best effort: it may be the attacker)."""
    session = server_hello.get("session") if isinstance(server_hello, dict) else None
    try:
        async with http.post(base + "/v1/make/abort", json={"session": str(session)[:32], "code": exc.code,
                                                            "reason": str(exc)[:300]}) as resp:
            await resp.read()
    except aiohttp.ClientError:
        pass


async def handshake(base_url: str, *, role: str, domain: str, manifest: dict[str, Any], bundle_measurement: str,
                    attester: Attester, verifier: VerifierConfig, expect_domain: str,
                    http: aiohttp.ClientSession | None = None,
                    runtime_log: tuple[LogEntry, ...] | None = None) -> tuple[Session, bytes]:
    """Run MAKE against `base_url`; returns the session and the opened release payload.

    `runtime_log` is what this side measured since boot (attest/runtime_log); by default the one
    bundle entry, for attesters without runtime registers (sim, SEV-SNP).
    """
    log = runtime_log if runtime_log is not None else (LogEntry(BUNDLE_REGISTER, "bundle", bundle_measurement),)
    client = Client(role=role, domain=domain, attester=attester, runtime_log=log)
    own = http is None
    http = http or aiohttp.ClientSession(timeout=TIMEOUT)
    try:
        base = base_url.rstrip("/")
        server_hello = await _post(http, base + "/v1/make/hello", client.hello())
        try:
            finish, open_release = client.finish(server_hello, lambda ev: verify(ev, verifier))
            session = client.session
            if session.domain != expect_domain:
                raise MakeError("domain", f"answered by the control plane of {session.domain!r}, "
                                          f"expected {expect_domain!r}")
            admit(manifest, bundle_measurement, session.domain, session.peer, role=role, own_domain=domain)
        except MakeError as exc:
            await _abort(http, base, server_hello, exc)
            raise ControlError(exc.code, f"control plane not trusted: {exc}") from None
        reply = await _post(http, base + "/v1/make/finish", finish)
        try:
            return session, open_release(reply)
        except MakeError as exc:
            await _abort(http, base, server_hello, exc)
            raise ControlError(exc.code, str(exc)) from None
    except aiohttp.ClientError as exc:
        raise ControlError("unreachable", f"{base_url}: {exc.__class__.__name__}: {exc}") from None
    finally:
        if own:
            await http.close()


async def attest(base_url: str, *, domain: str, manifest: dict[str, Any], bundle_measurement: str,
                 attester: Attester, verifier: VerifierConfig, http: aiohttp.ClientSession | None = None,
                 runtime_log: tuple[LogEntry, ...] | None = None) -> Release:
    """A node: attest to its domain's control plane and receive keys and a sender id."""
    session, payload = await handshake(base_url, role="node", domain=domain, manifest=manifest,
                                       bundle_measurement=bundle_measurement, attester=attester,
                                       verifier=verifier, expect_domain=domain, http=http, runtime_log=runtime_log)
    try:
        doc = json.loads(payload)
        release = Release(doc, session)
        release.key_file()  # the release is a valid key file, or we refuse it now
    except (ValueError, KeyError, TypeError) as exc:
        raise ControlError("malformed", f"release: not a key release ({exc})") from None
    return release
