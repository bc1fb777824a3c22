"""Federation between the control planes of the policy's domains, and epoch rotation (receive before send)."""

from __future__ import annotations

from typing import Any

import pytest

from cp_lab import BUNDLE, Platforms, attest_node, live, make_broker, manifest, run
from sealnet.runtime.attest.sim import SimPlatform
from sealnet.runtime.control_client import ControlError
from sealnet.runtime.controlplane.federation import Federation
from sealnet.runtime.seal_wire import direction_key

A, B = Platforms.make(), Platforms.make()
EVIL = SimPlatform.generate(A.cp.launch_measurement)
M = manifest({"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": None})
VERIFIER = A.verifier(B.cp, B.node, EVIL)


def _brokers(tmp_path, clock: Any = None, m_b: dict | None = None, bundle_b: str = BUNDLE):  # type: ignore[no-untyped-def]
    a = make_broker(str(tmp_path / "a.db"), "a", M, A.cp, VERIFIER, period=10, clock=clock)
    b = make_broker(str(tmp_path / "b.db"), "b", m_b or M, B.cp, VERIFIER, period=10, clock=clock, bundle=bundle_b)
    return a, b


def _pairs(release) -> dict[tuple[str, str], Any]:  # type: ignore[no-untyped-def]
    return {p.domains: p for p in release.key_file().pairs}


def test_both_domains_hold_the_same_pair_keys_agreed_over_make(tmp_path) -> None:
    async def go() -> None:
        a, b = _brokers(tmp_path)
        async with live(a, {}) as cp_a:
            async with live(b, {"a": cp_a.url}) as cp_b:
                await cp_b.federation.sync()
                node_a = await attest_node(cp_a, A.node, M, VERIFIER, domain="a")
                node_b = await attest_node(cp_b, B.node, M, VERIFIER, domain="b")
                pa, pb = _pairs(node_a), _pairs(node_b)
                assert pa[("a", "b")].current == pb[("a", "b")].current
                assert pa[("a", "b")].next == pb[("a", "b")].next
                epoch, key = pa[("a", "b")].current
                # what a's node seals towards b, b's node opens: the same direction key on both sides
                assert direction_key(bytes(key), "a", "b", epoch) == \
                    direction_key(bytes(pb[("a", "b")].current[1]), "a", "b", epoch)
                # pairs with a domain without a control plane are drawn by their only keeper
                assert ("a", "c") in pa and ("b", "c") in pb and pa[("a", "c")].current != pb[("b", "c")].current
                assert node_b.payload["missing"] == []
                fed = [r for r in cp_a.state.audit_rows() if r.event == "federate"]
                assert fed and fed[0].code == "ok" and fed[0].detail["pair"] == "a|b"
                received = [r for r in cp_b.state.audit_rows() if r.event == "federate"]
                assert received[0].reason == "pair secrets received from the keeper"
    run(go())


def test_an_unreachable_keeper_leaves_the_pair_fail_closed(tmp_path) -> None:
    async def go() -> None:
        _, b = _brokers(tmp_path)
        async with live(b, {"a": "http://127.0.0.1:9"}) as cp_b:
            await cp_b.federation.sync()
            await cp_b.federation.sync()  # a retry with the same failure adds no second row
            rel = await attest_node(cp_b, B.node, M, VERIFIER, domain="b")
            assert rel.payload["missing"] == ["a|b"] and ("a", "b") not in _pairs(rel)
            rows = [r for r in cp_b.state.audit_rows() if r.event == "federate"]
            assert [r.code for r in rows] == ["unreachable"]
    run(go())


@pytest.mark.parametrize("who,code", [("evil", "domain"), ("c", "domain"), ("a", "domain"),
                                      ("b_other_bundle", "bundle_measurement")])
def test_control_planes_outside_the_signed_policy_get_nothing(tmp_path, who: str, code: str) -> None:
    async def go() -> None:
        a, _ = _brokers(tmp_path)
        async with live(a, {}) as cp_a:
            domain, bundle = {"evil": ("evil", BUNDLE), "c": ("c", BUNDLE), "a": ("a", BUNDLE),
                              "b_other_bundle": ("b", "sha384:" + "cd" * 48)}[who]
            m = manifest({"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": None, "evil": "127.0.0.1:3"})
            impostor = make_broker(str(tmp_path / "x.db"), domain, m, EVIL, VERIFIER, bundle=bundle)
            fed = Federation(impostor, {"a": cp_a.url})
            with pytest.raises(ControlError) as err:
                await fed.fetch("a|" + domain if domain > "a" else domain + "|a", "a")
            assert err.value.code == code
            assert code in cp_a.codes()
            assert not [r for r in cp_a.state.audit_rows() if r.event == "federate"]
            impostor.state.close()
    run(go())


def test_rotation_announces_next_a_period_ahead_and_never_goes_back(tmp_path) -> None:
    now = [1_000_000.0]

    async def go() -> None:
        a, b = _brokers(tmp_path, clock=lambda: now[0])
        async with live(a, {}) as cp_a:
            async with live(b, {"a": cp_a.url}) as cp_b:
                await cp_b.federation.sync()
                before_a = _pairs(await attest_node(cp_a, A.node, M, VERIFIER, domain="a"))[("a", "b")]
                now[0] += 10  # one period later
                await cp_b.federation.sync()
                rel_a = await attest_node(cp_a, A.node, M, VERIFIER, domain="a")
                rel_b = await attest_node(cp_b, B.node, M, VERIFIER, domain="b")
                after_a, after_b = _pairs(rel_a)[("a", "b")], _pairs(rel_b)[("a", "b")]
                # receive before send: the key a node has sent with since the rotation is the one
                # every node already held, one period earlier, as `next`
                assert after_a.current == before_a.next
                assert after_a.current == after_b.current and after_a.next == after_b.next
                assert after_a.next[0] == after_a.current[0] + 1
                assert rel_a.payload["previous"][0]["epoch"] == before_a.current[0]
                assert rel_a.payload["previous"][0]["key"] == bytes(before_a.current[1]).hex()
                now[0] -= 100  # a clock stepped back brings no old epoch back
                again = _pairs(await attest_node(cp_a, A.node, M, VERIFIER, domain="a"))[("a", "b")]
                assert again.current == after_a.current
    run(go())
