"""MAKE, the Mutually Attested Key Exchange (docs/make.md is the specification).

Three messages and a result, transport-free (the control plane carries them
over HTTP):

    client -> server  ClientHello    versions, suites, nonce, X25519 share, role, domain
    server -> client  ServerHello    choice, its own offer, nonce, share, its runtime log digest,
                                     its evidence (report data = server binding), confirm MAC
    client -> server  ClientFinish   its runtime log digest, its evidence (report data = client
                                     binding), confirm MAC
    server -> client  Release        AES-256-GCM under the session key, or a refusal

Each side's evidence carries in its report data a hash of the transcript up
to its own message, so evidence from another session, another share or
another nonce does not verify; the confirm MACs prove both sides hold the
X25519 secret of this transcript. All secret comparisons are constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Any, Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from sealnet.contracts.manifest import canonical
from sealnet.runtime.attest.evidence import Evidence, EvidenceError, LogEntry, Verified, log_digest

VERSIONS = (1,)  # highest first
SUITES = ("x25519-hkdf-sha384-aes256gcm", "x25519-hkdf-sha384-chacha20poly1305")  # preference order
ROLES = ("node", "controlplane")
LABEL = b"sealnet-make-v1"
SERVER_TAG, CLIENT_TAG = b"sealnet-make-srv", b"sealnet-make-cli"  # 16 bytes each: report data 48..63
NONCE_LEN, SHARE_LEN, HASH_LEN = 32, 32, 48
MAX_NAME = 64

Attester = Callable[[bytes, tuple[LogEntry, ...]], Evidence]
EvidenceVerifier = Callable[[Evidence], Verified]


class MakeError(Exception):
    """A handshake refused: `code` names the check (it goes to the audit log), the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------ primitives


def _h(*parts: bytes) -> bytes:
    h = hashlib.sha384(LABEL)
    for p in parts:
        h.update(len(p).to_bytes(4, "big") + p)
    return h.digest()


def _expand(prk: bytes, info: bytes, length: int) -> bytes:
    return HKDFExpand(hashes.SHA384(), length, LABEL + b" " + info).derive(prk)


def _extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha384).digest()


def _aead(suite: str, key: bytes) -> AESGCM | ChaCha20Poly1305:
    return AESGCM(key) if suite.endswith("aes256gcm") else ChaCha20Poly1305(key)


def report_data(transcript: bytes, tag: bytes) -> bytes:
    """What the evidence must carry: 48 bytes of transcript hash and the 16-byte role tag."""
    return transcript + tag


def negotiate(client_versions: list[int], client_suites: list[str],
              server_versions: tuple[int, ...], server_suites: tuple[str, ...]) -> tuple[int, str]:
    """The highest common version and the client's most preferred common suite."""
    versions = [v for v in server_versions if v in client_versions]
    if not versions:
        raise MakeError("version", f"no common protocol version (client offers {client_versions[:8]})")
    suites = [s for s in client_suites if s in server_suites]
    if not suites:
        raise MakeError("suite", "no common cipher suite")
    return max(versions), suites[0]


# ------------------------------------------------------------------ message checks


def _field(msg: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = msg.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MakeError("malformed", f"{where}.{name}: missing or not a {kind.__name__}")
    return value


def _hexbytes(msg: dict[str, Any], name: str, length: int, where: str) -> bytes:
    text = _field(msg, name, str, where)
    if len(text) != 2 * length:
        raise MakeError("malformed", f"{where}.{name}: expected {length} bytes in hex")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise MakeError("malformed", f"{where}.{name}: not hexadecimal") from None


def _exact_keys(msg: Any, keys: set[str], where: str) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise MakeError("malformed", f"{where}: expected a JSON object")
    if set(msg) != keys:
        extra, missing = sorted(set(msg) - keys), sorted(keys - set(msg))
        raise MakeError("malformed", f"{where}: " + (f"unknown field {extra[0][:32]!r}" if extra
                                                     else f"missing field {missing[0]!r}"))
    return msg


def _list_of(msg: dict[str, Any], name: str, kind: type, where: str) -> list[Any]:
    value = _field(msg, name, list, where)
    if not 1 <= len(value) <= 8 or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise MakeError("malformed", f"{where}.{name}: expected 1 to 8 {kind.__name__} values")
    return value


def _name(msg: dict[str, Any], name: str, where: str) -> str:
    value = _field(msg, name, str, where)
    if not 1 <= len(value) <= MAX_NAME or not value.isprintable():
        raise MakeError("malformed", f"{where}.{name}: not a name")
    return value


def _evidence(doc: Any, where: str) -> Evidence:
    try:
        return Evidence.from_json(doc, where)
    except EvidenceError as exc:
        raise MakeError("malformed", str(exc)) from None


def _verify_evidence(evidence: Evidence, verify: EvidenceVerifier, expected_rd: bytes, log_hex: str) -> Verified:
    """Evidence chain, then the binding to this transcript, then the runtime log it claims."""
    try:
        verified = verify(evidence)
    except EvidenceError as exc:
        code = "simulated" if evidence.tee == "sim" and "not accepted" in str(exc) else "evidence"
        raise MakeError(code, str(exc)) from None
    if not hmac.compare_digest(verified.report_data, expected_rd):
        raise MakeError("binding", "evidence report data is not bound to this handshake's transcript "
                                   "(replayed or from another session)")
    if not hmac.compare_digest(log_digest(evidence.runtime_log).hex(), log_hex):
        raise MakeError("binding", "the runtime log is not the one the transcript names")
    return verified


@dataclass
class Session:
    """What a finished handshake leaves: the peer's verified evidence and claims, and the keys."""

    version: int
    suite: str
    role: str
    domain: str
    peer: Verified
    transcript: bytes
    app_key: bytes
    exporter_secret: bytes

    def seal(self, payload: bytes) -> dict[str, Any]:
        nonce = os.urandom(12)
        return {"type": "release", "nonce": nonce.hex(),
                "sealed": _aead(self.suite, self.app_key).encrypt(nonce, payload, self.transcript).hex()}

    def open(self, msg: Any) -> bytes:
        msg = _exact_keys(msg, {"type", "nonce", "sealed"}, "release")
        if msg["type"] != "release":
            raise MakeError("malformed", "release.type: not a release")
        nonce = _hexbytes(msg, "nonce", 12, "release")
        sealed_hex = _field(msg, "sealed", str, "release")
        try:
            sealed = bytes.fromhex(sealed_hex)
            return _aead(self.suite, self.app_key).decrypt(nonce, sealed, self.transcript)
        except Exception:
            raise MakeError("confirm", "release: does not open under this session's key (tampered)") from None

    def export(self, label: str, length: int = 32) -> bytes:
        """A secret both sides derive from this session alone (federation pair secrets)."""
        return _expand(self.exporter_secret, b"exporter " + label.encode(), length)


def _schedule(shared: bytes, th_server: bytes) -> tuple[bytes, bytes, bytes]:
    if not any(shared):
        raise MakeError("malformed", "share: a low-order X25519 point (all-zero shared secret)")
    prk = _extract(th_server, shared)
    return prk, _expand(prk, b"server confirm", HASH_LEN), _expand(prk, b"client confirm", HASH_LEN)


def _session(prk: bytes, th_client: bytes, version: int, suite: str, role: str, domain: str,
             peer: Verified) -> Session:
    return Session(version, suite, role, domain, peer, th_client,
                   _expand(prk, b"application " + th_client, 32), _expand(prk, b"exporter " + th_client, 48))


def _mac(key: bytes, transcript: bytes) -> bytes:
    return hmac.new(key, transcript, hashlib.sha384).digest()


def _x25519(private: X25519PrivateKey, share: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:
        raise MakeError("malformed", "share: not a usable X25519 public key") from None


# ------------------------------------------------------------------ client


class Client:
    """The initiating side: a node, or a control plane contacting a federated peer."""

    def __init__(self, *, role: str, domain: str, attester: Attester, runtime_log: tuple[LogEntry, ...],
                 versions: tuple[int, ...] = VERSIONS, suites: tuple[str, ...] = SUITES) -> None:
        self.role, self.domain, self.attester, self.log = role, domain, attester, runtime_log
        self.versions, self.suites = versions, suites
        self._key = X25519PrivateKey.generate()
        self._hello: dict[str, Any] | None = None
        self._prk = b""
        self._th_server = b""
        self._server_hello: dict[str, Any] = {}
        self.peer: Verified | None = None

    def hello(self) -> dict[str, Any]:
        self._hello = {"type": "client_hello", "versions": list(self.versions), "suites": list(self.suites),
                       "nonce": os.urandom(NONCE_LEN).hex(), "share": self._key.public_key().public_bytes_raw().hex(),
                       "role": self.role, "domain": self.domain}
        return self._hello

    def finish(self, msg: Any, verify: EvidenceVerifier) -> tuple[dict[str, Any], Callable[[Any], bytes]]:
        """Check the ServerHello; returns the ClientFinish and the function that opens the release."""
        assert self._hello is not None, "hello() first"
        where = "server_hello"
        msg = _exact_keys(msg, {"type", "session", "version", "suite", "versions", "suites", "nonce", "share",
                                "domain", "log", "evidence", "confirm"}, where)
        if msg["type"] != "server_hello":
            raise MakeError("malformed", f"{where}.type: not a server_hello")
        session_id = _hexbytes(msg, "session", 16, where)
        version, suite = _field(msg, "version", int, where), _field(msg, "suite", str, where)
        server_versions = tuple(_list_of(msg, "versions", int, where))
        server_suites = tuple(_list_of(msg, "suites", str, where))
        # Downgrade: the choice must be what negotiation over both offers gives; both offers are in the
        # transcript the server's evidence and MAC bind, so neither can be edited on the way.
        expected = negotiate(list(self.versions), list(self.suites), server_versions, server_suites)
        if (version, suite) != expected:
            raise MakeError("downgrade", f"server chose version {version} {suite[:48]!r}, "
                                         f"negotiation gives {expected[0]} {expected[1]!r}")
        _hexbytes(msg, "nonce", NONCE_LEN, where)
        share = _hexbytes(msg, "share", SHARE_LEN, where)
        domain = _name(msg, "domain", where)
        log_hex = _hexbytes(msg, "log", HASH_LEN, where).hex()
        confirm = _hexbytes(msg, "confirm", HASH_LEN, where)
        evidence = _evidence(msg["evidence"], f"{where}.evidence")
        body = {k: v for k, v in msg.items() if k not in ("evidence", "confirm")}
        th_bind = _h(canonical(self._hello), canonical(body))
        th_server = _h(th_bind, canonical(msg["evidence"]))
        prk, k_server, k_client = _schedule(_x25519(self._key, share), th_server)
        if not hmac.compare_digest(_mac(k_server, th_server), confirm):
            raise MakeError("confirm", f"{where}.confirm: key confirmation failed (tampered or wrong key)")
        self.peer = _verify_evidence(evidence, verify, report_data(th_bind, SERVER_TAG), log_hex)
        finish_body = {"type": "client_finish", "session": session_id.hex(), "log": log_digest(self.log).hex()}
        th_cbind = _h(th_server, canonical(finish_body))
        mine = self.attester(report_data(th_cbind, CLIENT_TAG), self.log).to_json()
        th_client = _h(th_cbind, canonical(mine))
        finish = {**finish_body, "evidence": mine, "confirm": _mac(k_client, th_client).hex()}
        session = _session(prk, th_client, version, suite, self.role, domain, self.peer)
        self.session = session
        return finish, session.open


# ------------------------------------------------------------------ server


@dataclass
class Pending:
    """Server state between ServerHello and ClientFinish (in memory, short-lived)."""

    hello: dict[str, Any]
    version: int
    suite: str
    th_server: bytes
    prk: bytes
    k_client: bytes
    created: float


class Server:
    """The responding side: a control plane."""

    def __init__(self, *, domain: str, attester: Attester, runtime_log: tuple[LogEntry, ...],
                 versions: tuple[int, ...] = VERSIONS, suites: tuple[str, ...] = SUITES) -> None:
        self.domain, self.attester, self.log = domain, attester, runtime_log
        self.versions, self.suites = versions, suites

    def respond(self, msg: Any, session_id: bytes, now: float) -> tuple[dict[str, Any], Pending]:
        where = "client_hello"
        msg = _exact_keys(msg, {"type", "versions", "suites", "nonce", "share", "role", "domain"}, where)
        if msg["type"] != "client_hello":
            raise MakeError("malformed", f"{where}.type: not a client_hello")
        versions = _list_of(msg, "versions", int, where)
        suites = _list_of(msg, "suites", str, where)
        _hexbytes(msg, "nonce", NONCE_LEN, where)
        share = _hexbytes(msg, "share", SHARE_LEN, where)
        if msg.get("role") not in ROLES:
            raise MakeError("malformed", f"{where}.role: must be one of {', '.join(ROLES)}")
        _name(msg, "domain", where)
        version, suite = negotiate(versions, suites, self.versions, self.suites)
        key = X25519PrivateKey.generate()
        shared = _x25519(key, share)
        body = {"type": "server_hello", "session": session_id.hex(), "version": version, "suite": suite,
                "versions": list(self.versions), "suites": list(self.suites), "nonce": os.urandom(NONCE_LEN).hex(),
                "share": key.public_key().public_bytes_raw().hex(), "domain": self.domain,
                "log": log_digest(self.log).hex()}
        th_bind = _h(canonical(msg), canonical(body))
        evidence = self.attester(report_data(th_bind, SERVER_TAG), self.log).to_json()
        th_server = _h(th_bind, canonical(evidence))
        prk, k_server, k_client = _schedule(shared, th_server)
        reply = {**body, "evidence": evidence, "confirm": _mac(k_server, th_server).hex()}
        return reply, Pending(msg, version, suite, th_server, prk, k_client, now)

    def finish(self, pending: Pending, msg: Any, session_id: bytes, verify: EvidenceVerifier) -> Session:
        where = "client_finish"
        msg = _exact_keys(msg, {"type", "session", "log", "evidence", "confirm"}, where)
        if msg["type"] != "client_finish":
            raise MakeError("malformed", f"{where}.type: not a client_finish")
        if not hmac.compare_digest(_hexbytes(msg, "session", 16, where), session_id):
            raise MakeError("malformed", f"{where}.session: not this session")
        log_hex = _hexbytes(msg, "log", HASH_LEN, where).hex()
        confirm = _hexbytes(msg, "confirm", HASH_LEN, where)
        evidence = _evidence(msg["evidence"], f"{where}.evidence")
        body = {"type": "client_finish", "session": msg["session"], "log": msg["log"]}
        th_cbind = _h(pending.th_server, canonical(body))
        th_client = _h(th_cbind, canonical(msg["evidence"]))
        # The MAC first: it is cheap and rejects any edited message before costly chain checks.
        if not hmac.compare_digest(_mac(pending.k_client, th_client), confirm):
            raise MakeError("confirm", f"{where}.confirm: key confirmation failed (tampered or wrong key)")
        peer = _verify_evidence(evidence, verify, report_data(th_cbind, CLIENT_TAG), log_hex)
        return _session(pending.prk, th_client, pending.version, pending.suite, pending.hello["role"],
                        pending.hello["domain"], peer)
