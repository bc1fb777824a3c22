"""MAKE without a transport: agreement, the binding of evidence to the transcript, and the key
schedule recomputed independently from docs/make.md with hashlib/hmac and cryptography's HKDF."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from cp_lab import BUNDLE, LAUNCH, Platforms
from sealnet.contracts.manifest import canonical
from sealnet.runtime.attest.evidence import BUNDLE_REGISTER, LogEntry, log_digest
from sealnet.runtime.attest.verifier import verify
from sealnet.runtime.make import SUITES, Client, MakeError, Server, negotiate

P = Platforms.make()
LOG = (LogEntry(BUNDLE_REGISTER, "bundle", BUNDLE),)


def _pair() -> tuple[Client, Server]:
    return (Client(role="node", domain="a", attester=P.node.attest, runtime_log=LOG),
            Server(domain="a", attester=P.cp.attest, runtime_log=LOG))


def _verify(ev):  # type: ignore[no-untyped-def]
    return verify(ev, P.verifier())


def _run() -> tuple[dict, dict, dict, object, object]:
    client, server = _pair()
    hello = client.hello()
    sid = b"\x01" * 16
    sh, pending = server.respond(hello, sid, 0.0)
    finish, opener = client.finish(sh, _verify)
    session = server.finish(pending, finish, sid, _verify)
    return hello, sh, finish, client.session, session


def test_both_sides_agree_and_the_release_opens_only_there() -> None:
    _, _, _, c, s = _run()
    assert c.app_key == s.app_key and c.transcript == s.transcript and c.export("x") == s.export("x")
    assert c.export("x") != c.export("y")
    assert s.peer.simulated and s.peer.launch_measurement == "sha384:" + LAUNCH.hex()
    assert s.peer.bundle_measurement == BUNDLE
    assert c.open(s.seal(b"keys")) == b"keys"
    _, _, _, other, _ = _run()
    with pytest.raises(MakeError) as err:
        other.open(s.seal(b"keys"))
    assert err.value.code == "confirm"


def _h(*parts: bytes) -> bytes:
    h = hashlib.sha384(b"sealnet-make-v1")
    for p in parts:
        h.update(len(p).to_bytes(4, "big") + p)
    return h.digest()


def test_transcript_and_key_schedule_match_the_specification() -> None:
    """Recompute every value docs/make.md defines from the messages on the wire."""
    hello, sh, finish, c, s = _run()
    body = {k: v for k, v in sh.items() if k not in ("evidence", "confirm")}
    th_bind = _h(canonical(hello), canonical(body))
    assert _verify_rd(sh["evidence"]) == th_bind + b"sealnet-make-srv"
    th_server = _h(th_bind, canonical(sh["evidence"]))
    th_cbind = _h(th_server, canonical({k: finish[k] for k in ("type", "session", "log")}))
    assert _verify_rd(finish["evidence"]) == th_cbind + b"sealnet-make-cli"
    th_client = _h(th_cbind, canonical(finish["evidence"]))
    assert th_client == s.transcript
    assert finish["log"] == log_digest(LOG).hex()


def _verify_rd(evidence_json: dict) -> bytes:
    from sealnet.runtime.attest.evidence import Evidence

    return _verify(Evidence.from_json(evidence_json)).report_data


def test_confirm_macs_follow_the_key_schedule(monkeypatch) -> None:
    """With the X25519 private keys pinned, the MACs and the session key are recomputed from the spec."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    import sealnet.runtime.make as make

    keys = [X25519PrivateKey.generate(), X25519PrivateKey.generate()]
    it = iter(keys)
    monkeypatch.setattr(make.X25519PrivateKey, "generate", staticmethod(lambda: next(it)))
    hello, sh, finish, c, s = _run()
    shared = keys[0].exchange(keys[1].public_key())
    body = {k: v for k, v in sh.items() if k not in ("evidence", "confirm")}
    th_server = _h(_h(canonical(hello), canonical(body)), canonical(sh["evidence"]))
    prk = hmac.new(th_server, shared, hashlib.sha384).digest()
    expand = lambda info, n: HKDFExpand(hashes.SHA384(), n, b"sealnet-make-v1 " + info).derive(prk)  # noqa: E731
    assert sh["confirm"] == hmac.new(expand(b"server confirm", 48), th_server, hashlib.sha384).hexdigest()
    th_client = s.transcript
    assert finish["confirm"] == hmac.new(expand(b"client confirm", 48), th_client, hashlib.sha384).hexdigest()
    assert s.app_key == expand(b"application " + th_client, 32)


def test_negotiation_picks_the_best_common_choice() -> None:
    assert negotiate([1], list(SUITES), (1,), SUITES) == (1, SUITES[0])
    assert negotiate([1], [SUITES[1], SUITES[0]], (1,), SUITES) == (1, SUITES[1])  # the client's preference
    assert negotiate([1, 2], list(SUITES), (2, 1), SUITES)[0] == 2
    for versions, suites, code in (([3], list(SUITES), "version"), ([1], ["none"], "suite")):
        with pytest.raises(MakeError) as err:
            negotiate(versions, suites, (1,), SUITES)
        assert err.value.code == code


def test_low_order_share_is_refused() -> None:
    client, server = _pair()
    hello = client.hello()
    hello["share"] = "00" * 32  # the all-zero point: every shared secret would be zero
    with pytest.raises(MakeError) as err:
        server.respond(hello, b"\x02" * 16, 0.0)
    assert err.value.code == "malformed"
