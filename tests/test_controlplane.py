"""The key broker: keys only for attested nodes running the signed bundle; every refusal audited.

Each attack test checks three things: no key left the control plane (no
release row, no sender id spent), the client got no key, and the refusal is
in the audit log with the code of the check that caught it.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import sqlite3
from typing import Any, Callable

import aiohttp
import pytest

from cp_lab import BUNDLE, LAUNCH, Platforms, attest_node, live, make_broker, manifest, run
from sealnet.runtime.attest.evidence import BUNDLE_REGISTER, Evidence, LogEntry
from sealnet.runtime.attest.sim import SimPlatform
from sealnet.runtime.attest.verifier import VerifierConfig, verify
from sealnet.runtime.control_client import ControlError
from sealnet.runtime.controlplane import broker as broker_mod
from sealnet.runtime.controlplane.state import State, StateError, verify_audit_chain
from sealnet.runtime.keyschedule import SealedStateError, Sealer
from sealnet.runtime.make import Client, MakeError
from sealnet.runtime.seal_wire import direction_key

P = Platforms.make()
M = manifest()


def _broker(tmp_path, **kw: Any):
    verifier = kw.pop("verifier", P.verifier())
    return make_broker(str(tmp_path / "cp.db"), "a", kw.pop("m", M), P.cp, verifier, **kw)


async def _post(http: aiohttp.ClientSession, url: str, body: Any, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


def _log(bundle: str = BUNDLE) -> tuple[LogEntry, ...]:
    return (LogEntry(BUNDLE_REGISTER, "bundle", bundle),)



async def _raw(url: str, client: Client, verifier: VerifierConfig, *, hello_edit: Callable | None = None,
               server_edit: Callable | None = None, finish_edit: Callable | None = None,
               release_edit: Callable | None = None) -> tuple[str, Any]:
    """MAKE step by step, with a man in the middle editing messages; reports who stopped it."""
    async with aiohttp.ClientSession() as http:
        hello = client.hello()
        sent = copy.deepcopy(hello)
        if hello_edit:
            hello_edit(sent)
        _, sh = await _post(http, url + "/v1/make/hello", sent)
        if sh.get("type") == "refused":
            return "refused", sh["code"]
        session = sh["session"]
        if server_edit:
            server_edit(sh)
        try:
            finish, opener = client.finish(sh, lambda ev: verify(ev, verifier))
        except MakeError as exc:
            await _post(http, url + "/v1/make/abort", {"session": session, "code": exc.code, "reason": str(exc)})
            return "client", exc.code
        if finish_edit:
            finish_edit(finish)
        _, rel = await _post(http, url + "/v1/make/finish", finish)
        if rel.get("type") == "refused":
            return "refused", rel["code"]
        if release_edit:
            release_edit(rel)
        try:
            return "released", opener(rel)
        except MakeError as exc:
            await _post(http, url + "/v1/make/abort", {"session": session, "code": exc.code, "reason": str(exc)})
            return "client", exc.code


def _node(platform: SimPlatform = P.node, *, domain: str = "a", role: str = "node", bundle: str = BUNDLE,
          **kw: Any) -> Client:
    return Client(role=role, domain=domain, attester=kw.pop("attester", platform.attest), runtime_log=_log(bundle), **kw)


def _assert_refused(cp, code: str) -> None:
    assert cp.releases() == 0, "a key was released"
    assert cp.state.senders() == [], "a sender id was spent"
    assert code in cp.codes(), f"{code!r} not in the audit log: {cp.codes()}"


# ------------------------------------------------------------------ the good path


def test_attested_node_receives_installable_keys_and_a_fresh_sender(tmp_path) -> None:
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            first = await attest_node(cp, P.node, M, P.verifier())
            second = await attest_node(cp, P.node, M, P.verifier())
            assert (first.sender, second.sender) == (1, 2)
            assert first.simulated
            keys = first.key_file()
            assert [p.domains for p in keys.pairs] == [("a", "b"), ("a", "c")]
            pair = keys.pairs[0]
            assert pair.next is not None and pair.next[0] == pair.current[0] + 1
            # Both loads of the domain get the same pair keys (that is what lets them talk) ...
            assert second.key_file().pairs[0].current == pair.current
            # ... and the per-direction keys come out of the same derivation as static key files.
            assert len(direction_key(bytes(pair.current[1]), "a", "b", pair.current[0])) == 16
            rows = [r for r in cp.state.audit_rows() if r.event == "release"]
            assert [r.detail["sender"] for r in rows] == [1, 2]
            assert all(r.detail["simulated"] for r in rows)
            # No key material in the audit log, nor anywhere in the database in clear.
            secret_hex = bytes(pair.current[1]).hex()
            assert all(secret_hex not in json.dumps(r.detail) for r in cp.state.audit_rows())
            with open(cp.state.path, "rb") as fh:
                assert bytes(pair.current[1]) not in fh.read()
    run(go())


def test_concurrent_nodes_never_share_a_sender(tmp_path) -> None:
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            async with aiohttp.ClientSession() as http:
                releases = await asyncio.gather(*(attest_node(cp, P.node, M, P.verifier(), http=http)
                                                  for _ in range(40)))
            senders = [r.sender for r in releases]
            assert sorted(senders) == list(range(1, 41))
            assert cp.state.senders() == sorted(senders)
    run(go())


def test_restart_resumes_senders_and_epochs_and_refuses_another_sealing_key(tmp_path) -> None:
    async def first() -> tuple[int, bytes]:
        async with live(_broker(tmp_path)) as cp:
            for _ in range(3):
                rel = await attest_node(cp, P.node, M, P.verifier())
            return rel.sender, bytes(rel.key_file().pairs[0].current[1])

    last, key = run(first())

    async def second() -> None:
        async with live(_broker(tmp_path)) as cp:
            rel = await attest_node(cp, P.node, M, P.verifier())
            assert rel.sender == last + 1
            assert bytes(rel.key_file().pairs[0].current[1]) == key  # same epoch, same secret
    run(second())
    with pytest.raises(SealedStateError, match="sealing key"):
        State(str(tmp_path / "cp.db"), domain="a", sealer=Sealer(os.urandom(32)))
    with pytest.raises(StateError, match="belongs to the control plane of domain 'a'"):
        State(str(tmp_path / "cp.db"), domain="b", sealer=Sealer(P.cp.sealing_key()))


def test_epochs_never_go_back_with_the_clock(tmp_path) -> None:
    now = [1_000_000.0]
    b = _broker(tmp_path, period=10, clock=lambda: now[0])
    assert b.ensure_epochs() == 100_000
    now[0] += 25
    assert b.ensure_epochs() == 100_002
    now[0] -= 100  # the clock is stepped back: the epoch (and so its key) never comes back
    assert b.ensure_epochs() == 100_002
    assert b.state.epochs("a|b") == [100_000, 100_001, 100_002, 100_003]
    b.state.close()


def test_audit_log_is_append_only_and_chained(tmp_path) -> None:
    async def go() -> str:
        async with live(_broker(tmp_path)) as cp:
            await attest_node(cp, P.node, M, P.verifier())
            with pytest.raises(ControlError):
                await attest_node(cp, P.node, M, P.verifier(), bundle="sha384:" + "0" * 96)
            return cp.state.path
    path = run(go())
    db = sqlite3.connect(path, isolation_level=None)
    assert verify_audit_chain(db) is None
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET code = 'ok'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE event = 'refuse'")
    # Someone with the file drops the trigger and removes a row: the chain shows where.
    db.execute("DROP TRIGGER audit_no_delete")
    db.execute("DELETE FROM audit WHERE id = 2")
    assert verify_audit_chain(db) == 3
    db.close()


# ------------------------------------------------------------------ attacks: policy


@pytest.mark.parametrize("case", ["launch", "bundle", "other_domain", "sim_not_allowed", "untrusted_platform",
                                  "foreign_cp", "cp_without_control", "tee_mismatch", "no_measurements"])
def test_policy_refusals(tmp_path, case: str) -> None:
    verifier = P.verifier()
    m = M
    node = _node()
    expected = {"launch": "launch_measurement", "bundle": "bundle_measurement", "other_domain": "domain",
                "sim_not_allowed": "simulated", "untrusted_platform": "evidence", "foreign_cp": "domain",
                "cp_without_control": "domain", "tee_mismatch": "tee", "no_measurements": "launch_measurement"}[case]
    if case == "launch":
        node = _node(SimPlatform(P.node.key, bytes(48)))
    elif case == "bundle":
        node = _node(bundle="sha384:" + "ab" * 48)
    elif case == "other_domain":
        node = _node(domain="b")
    elif case == "sim_not_allowed":
        verifier = VerifierConfig()
    elif case == "untrusted_platform":
        node = _node(SimPlatform.generate(LAUNCH))
    elif case == "foreign_cp":
        node = _node(role="controlplane", domain="evil")
    elif case == "cp_without_control":
        node = _node(role="controlplane", domain="b")
    elif case == "tee_mismatch":
        m = manifest(tee="sev-snp")
    elif case == "no_measurements":
        m = manifest(measurements=[])
    # the control plane attests itself with simulated evidence the node trusts, whatever the CP trusts
    node_side = P.verifier()

    async def go() -> None:
        async with live(_broker(tmp_path, verifier=verifier, m=m)) as cp:
            outcome, code = await _raw(cp.url, node, node_side)
            assert (outcome, code) == ("refused", expected)
            _assert_refused(cp, expected)
    run(go())


# ------------------------------------------------------------------ attacks: replay and binding


def test_replayed_evidence_from_an_earlier_session_is_refused(tmp_path) -> None:
    recorded: list[Evidence] = []

    def recording(rd: bytes, log: tuple[LogEntry, ...]) -> Evidence:
        recorded.append(P.node.attest(rd, log))
        return recorded[-1]

    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            outcome, _ = await _raw(cp.url, _node(attester=recording), P.verifier())
            assert outcome == "released"
            outcome, code = await _raw(cp.url, _node(attester=lambda rd, log: recorded[0]), P.verifier())
            assert (outcome, code) == ("refused", "binding")
            assert cp.releases() == 1 and "binding" in cp.codes()
    run(go())


def test_report_data_not_bound_to_the_transcript_is_refused(tmp_path) -> None:
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            node = _node(attester=lambda rd, log: P.node.attest(os.urandom(64), log))
            assert await _raw(cp.url, node, P.verifier()) == ("refused", "binding")
            # The right transcript hash but the other side's role tag: bound, but not as a client.
            node = _node(attester=lambda rd, log: P.node.attest(rd[:48] + b"sealnet-make-srv", log))
            assert await _raw(cp.url, node, P.verifier()) == ("refused", "binding")
            _assert_refused(cp, "binding")
    run(go())


def test_reused_nonce_replayed_finish_and_stale_handshake_are_refused(tmp_path) -> None:
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp, aiohttp.ClientSession() as http:
            client = _node()
            hello = client.hello()
            status, sh = await _post(http, cp.url + "/v1/make/hello", hello)
            assert status == 200
            status, again = await _post(http, cp.url + "/v1/make/hello", hello)  # same nonce
            assert (status, again["code"]) == (403, "replay")
            # a stale handshake: its ClientFinish arrives after the handshake expired
            cp.broker.pending[bytes.fromhex(sh["session"])].created -= broker_mod.HANDSHAKE_TTL + 1
            finish, _ = client.finish(sh, lambda ev: verify(ev, P.verifier()))
            status, rel = await _post(http, cp.url + "/v1/make/finish", finish)
            assert (status, rel["code"]) == (403, "expired")
            # a finish replayed: the handshake is consumed by the first one
            status, rel = await _post(http, cp.url + "/v1/make/finish", finish)
            assert (status, rel["code"]) == (403, "replay")
            _assert_refused(cp, "expired")
            assert cp.codes().count("replay") == 2
    run(go())


# ------------------------------------------------------------------ attacks: every field of every message


def _flip_hex(text: str) -> str:
    return ("1" if text[0] != "1" else "2") + text[1:]


def _tamper_value(value: Any) -> Any:
    if isinstance(value, str):
        try:
            bytes.fromhex(value)
            return _flip_hex(value)
        except ValueError:
            return value + "x"
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, list):
        return value[::-1] if len(value) > 1 else value + value
    if isinstance(value, dict):  # evidence: flip one bit of the signed report
        out = copy.deepcopy(value)
        report = bytearray(base64.b64decode(out["report"]))
        report[0x90] ^= 1
        out["report"] = base64.b64encode(bytes(report)).decode()
        return out
    raise AssertionError(type(value))


HELLO_FIELDS = ["type", "versions", "suites", "nonce", "share", "role", "domain"]
SERVER_FIELDS = ["type", "session", "version", "suite", "versions", "suites", "nonce", "share", "domain", "log",
                 "evidence", "confirm"]
FINISH_FIELDS = ["type", "session", "log", "evidence", "confirm"]
RELEASE_FIELDS = ["type", "nonce", "sealed"]


def _edit(field: str) -> Callable[[dict[str, Any]], None]:
    def edit(msg: dict[str, Any]) -> None:
        msg[field] = _tamper_value(msg[field])
    return edit


@pytest.mark.parametrize("message,field", [("hello", f) for f in HELLO_FIELDS] + [("server", f) for f in SERVER_FIELDS]
                         + [("finish", f) for f in FINISH_FIELDS] + [("release", f) for f in RELEASE_FIELDS]
                         + [("hello", "+extra"), ("server", "-confirm"), ("finish", "-evidence")])
def test_every_field_of_every_message_tampered(tmp_path, message: str, field: str) -> None:
    def edit(msg: dict[str, Any]) -> None:
        if field.startswith("+"):
            msg[field[1:]] = "x"
        elif field.startswith("-"):
            del msg[field[1:]]
        else:
            _edit(field)(msg)

    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            outcome, value = await _raw(cp.url, _node(), P.verifier(), **{f"{message}_edit": edit})
            assert outcome in ("refused", "client"), f"tampered {message}.{field} went through"
            if message == "release":
                assert cp.releases() == 1  # released to the session, but nobody else can open it
                assert value in ("confirm", "malformed")
            else:
                assert cp.releases() == 0 and cp.state.senders() == []
            assert value in cp.codes(), (value, cp.codes())
    run(go())


def test_downgrades_are_refused(tmp_path) -> None:
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            # a man in the middle strips the preferred suite from the ClientHello
            strip = lambda msg: msg.update(suites=msg["suites"][1:])  # noqa: E731
            assert await _raw(cp.url, _node(), P.verifier(), hello_edit=strip) == ("client", "downgrade")
            # ... or rewrites the server's choice
            weaker = lambda msg: msg.update(suite="x25519-hkdf-sha384-chacha20poly1305")  # noqa: E731
            assert await _raw(cp.url, _node(), P.verifier(), server_edit=weaker) == ("client", "downgrade")
            # a client that offers only versions the server does not speak
            assert await _raw(cp.url, _node(versions=(0,)), P.verifier()) == ("refused", "version")
            assert await _raw(cp.url, _node(suites=("x25519-null",)), P.verifier()) == ("refused", "suite")
            _assert_refused(cp, "downgrade")
            assert {"version", "suite"} <= set(cp.codes())
    run(go())


# ------------------------------------------------------------------ attacks: bad requests


@pytest.mark.parametrize("body,code,status", [
    (b"", "malformed", 400),
    (b"{\"type\": \"client_hel", "malformed", 400),
    (b"\xff\xfe\x00garbage", "malformed", 400),
    (b"[1, 2, 3]", "malformed", 400),
    (b"{\"type\": \"client_hello\", \"versions\": \"1\"}", "malformed", 400),
    (json.dumps({"type": "client_hello", "versions": [1], "suites": ["x"], "nonce": "00" * 32,
                 "share": "00" * 32, "role": "node", "domain": "a"}).encode(), "suite", 403),
    (json.dumps({"type": "client_hello", "versions": [1], "suites": ["x25519-hkdf-sha384-aes256gcm"],
                 "nonce": "00" * 32, "share": "00" * 32, "role": "node", "domain": "a"}).encode(), "malformed", 400),
    (b"{" + b"\"a\":1," * 20000 + b"\"b\":2}", "oversize", 413),
])
def test_malformed_truncated_and_oversized_requests(tmp_path, body: bytes, code: str, status: int) -> None:
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp, aiohttp.ClientSession() as http:
            for step in ("hello", "finish"):
                got_status, doc = await _post(http, f"{cp.url}/v1/make/{step}", None, raw=body)
                if step == "hello":
                    assert (got_status, doc["code"]) == (status, code)
                else:
                    assert got_status in (400, 403, 413) and doc["type"] == "refused"
            _assert_refused(cp, code)
    run(go())


def test_a_release_that_cannot_be_recorded_is_not_released(tmp_path) -> None:
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            with cp.state.lock:
                cp.state._set_meta("next_sender", str(2**32))  # the domain's sender ids are used up
            with pytest.raises(ControlError) as err:
                await attest_node(cp, P.node, M, P.verifier())
            assert err.value.code == "state" and "out of sender ids" in str(err.value)
            _assert_refused(cp, "state")
    run(go())


def test_a_truncated_body_times_out_and_is_audited(tmp_path, monkeypatch) -> None:
    """Content-Length promises more than arrives (a truncated or slow-loris request): 408, audited."""
    from sealnet.runtime.controlplane import server as server_mod

    monkeypatch.setattr(server_mod, "READ_TIMEOUT", 0.5)

    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            reader, writer = await asyncio.open_connection("127.0.0.1", cp.running.port)
            writer.write(b"POST /v1/make/hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 5000\r\n\r\n{\"type\": \"client_hel")
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            assert b" 408 " in status_line, status_line
            _assert_refused(cp, "timeout")
    run(go())


def test_a_body_that_arrives_in_pieces_is_read_whole(tmp_path) -> None:
    """A ClientHello split across TCP segments with a pause between them is one request, not garbage."""
    async def go() -> None:
        async with live(_broker(tmp_path)) as cp:
            body = json.dumps(_node().hello()).encode()
            reader, writer = await asyncio.open_connection("127.0.0.1", cp.running.port)
            writer.write(b"POST /v1/make/hello HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body[:40])
            await writer.drain()
            await asyncio.sleep(0.3)
            writer.write(body[40:])
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 10)
            writer.close()
            assert b" 200 " in status_line, status_line
            assert cp.codes() == []
    run(go())


def test_handshakes_in_flight_are_bounded_and_status_says_simulated(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(broker_mod, "MAX_PENDING", 2)

    async def go() -> None:
        async with live(_broker(tmp_path)) as cp, aiohttp.ClientSession() as http:
            codes = [(await _post(http, cp.url + "/v1/make/hello", _node().hello()))[0] for _ in range(3)]
            assert codes == [200, 200, 503]
            _assert_refused(cp, "busy")
            async with http.get(cp.url + "/v1/status") as resp:
                status = await resp.json()
            assert status["simulated"] is True and status["domain"] == "a" and status["bundle_measurement"] == BUNDLE
            assert "key" not in json.dumps(status).lower()
    run(go())
