"""The node's runtime log: bundles measured since boot, extended into RTMR3 on TDX, replayed by verifiers."""

from __future__ import annotations


import pytest

from cp_lab import BUNDLE, LAUNCH, Platforms, attest_node, live, make_broker, manifest, run
from sealnet.runtime.attest import runtime_log, tdx
from sealnet.runtime.attest.evidence import BUNDLE_REGISTER, Evidence, EvidenceError, LogEntry, replay
from sealnet.runtime.control_client import ControlError
from tdx_lab import IntelWorld, LabTd

OLD = "sha384:" + "ab" * 48
P = Platforms.make()


def test_record_is_idempotent_appends_on_change_and_survives_a_restart(tmp_path) -> None:
    path = runtime_log.log_path(str(tmp_path / "run"))
    assert runtime_log.load(path) == ()
    first = runtime_log.record_bundle(path, OLD, rtmr_path=None)
    assert runtime_log.record_bundle(path, OLD, rtmr_path=None) == first  # the same bundle again: no entry
    both = runtime_log.record_bundle(path, BUNDLE, rtmr_path=None)
    assert [e.digest for e in both] == [OLD, BUNDLE] and runtime_log.load(path) == both
    again = runtime_log.record_bundle(path, OLD, rtmr_path=None)  # back to the old bundle: it is last again
    assert [e.digest for e in again] == [OLD, BUNDLE, OLD]


def test_the_register_is_extended_before_the_log_is_written(tmp_path) -> None:
    """A stand-in file for the RTMR receives the 48-byte digest; a failed extension changes no log."""
    path = runtime_log.log_path(str(tmp_path))
    rtmr = str(tmp_path / "rtmr{}:sha384")
    runtime_log.record_bundle(path, BUNDLE, rtmr_path=rtmr)
    assert (tmp_path / f"rtmr{BUNDLE_REGISTER}:sha384").read_bytes() == bytes.fromhex(BUNDLE[7:])
    with pytest.raises(EvidenceError, match="cannot extend RTMR3"):
        runtime_log.record_bundle(path, OLD, rtmr_path=str(tmp_path / "absent" / "rtmr{}"))
    assert [e.digest for e in runtime_log.load(path)] == [BUNDLE]


@pytest.mark.parametrize("text,match", [("not json", "cannot be read"), ("{}", "not a list"),
                                        ('[{"register": 9, "kind": "bundle", "digest": "x"}]', "entry 0")])
def test_a_damaged_log_is_refused(tmp_path, text: str, match: str) -> None:
    path = runtime_log.log_path(str(tmp_path))
    (tmp_path / runtime_log.LOG_NAME).write_text(text)
    with pytest.raises(EvidenceError, match=match):
        runtime_log.record_bundle(path, BUNDLE, rtmr_path=None)


def test_tdx_replays_every_bundle_since_boot() -> None:
    world = IntelWorld()
    log = (LogEntry(BUNDLE_REGISTER, "bundle", OLD), LogEntry(BUNDLE_REGISTER, "bundle", BUNDLE))
    quote = LabTd(world, LAUNCH).quote(bytes(64), log)
    v = tdx.verify(Evidence("tdx", quote, {}, log), world.policy())
    assert v.bundle_measurement == BUNDLE and v.details["rtmr3"] == replay(log, 3).hex()
    with pytest.raises(EvidenceError, match="RTMR3"):  # a log that hides the earlier bundle does not replay
        tdx.verify(Evidence("tdx", quote, {}, log[1:]), world.policy())


def test_the_broker_judges_the_last_bundle_of_the_log(tmp_path) -> None:
    m = manifest()

    async def go() -> None:
        async with live(make_broker(str(tmp_path / "cp.db"), "a", m, P.cp, P.verifier())) as cp:
            ok = (LogEntry(BUNDLE_REGISTER, "bundle", OLD), LogEntry(BUNDLE_REGISTER, "bundle", BUNDLE))
            rel = await attest_node(cp, P.node, m, P.verifier(), runtime_log=ok)
            assert rel.sender == 1
            with pytest.raises(ControlError) as err:  # it went back to an older bundle since
                await attest_node(cp, P.node, m, P.verifier(), runtime_log=ok + (ok[0],))
            assert err.value.code == "bundle_measurement"
    run(go())
