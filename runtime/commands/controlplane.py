"""`sealnet controlplane serve|audit`: the key broker of one domain, and its audit log."""

from __future__ import annotations

import argparse
import json
import re

from sealnet.contracts.errors import UserError

DIGEST_RE = re.compile(r"^sha384:[0-9a-f]{96}$")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("controlplane", help="the attested key broker of a domain")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    serve = verbs.add_parser("serve", help="run MAKE with nodes and peer control planes; release keys")
    serve.add_argument("--bundle", required=True, metavar="BUNDLE", help="the signed bundle nodes must run")
    serve.add_argument("--trust", required=True, metavar="PUBKEY", help="the policy authority's public key")
    serve.add_argument("--domain", required=True, metavar="NAME", help="the domain this control plane serves")
    serve.add_argument("--db", required=True, metavar="FILE", help="the state database (SQLite)")
    serve.add_argument("--listen", required=True, metavar="HOST:PORT")
    serve.add_argument("--sim-platform", metavar="KEY",
                       help="attest this control plane with a SIMULATED platform key instead of configfs-tsm")
    serve.add_argument("--sim-launch", metavar="sha384:HEX", help="the launch measurement the simulated platform reports")
    serve.add_argument("--allow-sim", metavar="PUBKEY", action="append", default=[],
                       help="accept SIMULATED evidence signed by this platform key (repeatable; labs only)")
    serve.add_argument("--seal-key", metavar="FILE",
                       help="32-byte key sealing the state at rest (hardware TEEs; a simulated platform derives one)")
    serve.add_argument("--pin-ark", metavar="FILE", action="append", default=[],
                       help="sev-snp: also trust this ARK (a lab's own root)")
    serve.add_argument("--tdx-collateral", metavar="FILE", help="tdx: Intel PCS collateral as JSON")
    serve.add_argument("--epoch-seconds", type=int, default=3600, metavar="N", help="key rotation period")
    serve.add_argument("--peer", metavar="DOMAIN=URL", action="append", default=[],
                       help="reach a federated domain's control plane here (default: the policy's control address)")
    serve.set_defaults(func=run_serve)

    audit = verbs.add_parser("audit", help="print the audit log and check its chain")
    audit.add_argument("--db", required=True, metavar="FILE")
    audit.add_argument("--format", choices=("text", "json"), default="text")
    audit.set_defaults(func=run_audit)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(1 << 20)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


def _listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise UserError(f"--listen: {text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _peers(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, _, url = item.partition("=")
        if not name or not url.startswith(("http://", "https://")):
            raise UserError(f"--peer: {item!r} is not DOMAIN=http://HOST:PORT")
        out[name] = url
    return out


def run_serve(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import signal

    from sealnet.contracts.bundle import BundleError, load_bundle
    from sealnet.contracts.signing import load_public
    from sealnet.runtime.attest import sim, snp, tdx
    from sealnet.runtime.attest.evidence import EvidenceError
    from sealnet.runtime.attest.tsm import TsmAttester
    from sealnet.runtime.attest.verifier import VerifierConfig
    from sealnet.runtime.controlplane import server
    from sealnet.runtime.controlplane.broker import Broker, BrokerConfig
    from sealnet.runtime.controlplane.federation import Federation
    from sealnet.runtime.controlplane.state import State, StateError
    from sealnet.runtime.keyschedule import SealedStateError, Sealer

    host, port = _listen(args.listen)
    if args.epoch_seconds < 1:
        raise UserError("--epoch-seconds: must be at least 1")
    try:
        verified = load_bundle(_read(args.bundle), load_public(args.trust))
    except BundleError as exc:
        raise UserError(f"{args.bundle}: refused: {exc}") from None
    names = [d["name"] for d in verified.manifest.get("domains", [])]
    if args.domain not in names:
        raise UserError(f"--domain: {args.domain!r} is not a domain of the bundle's policy ({', '.join(names)})")
    try:
        if args.sim_platform:
            if not args.sim_launch or not DIGEST_RE.match(args.sim_launch):
                raise UserError("--sim-launch: required with --sim-platform, as sha384:<96 hex digits>")
            platform = sim.load_platform(args.sim_platform, bytes.fromhex(args.sim_launch[7:]))
            attester, sealing_key = platform.attest, platform.sealing_key()
        else:
            attester = TsmAttester().attest
            if not args.seal_key:
                raise UserError("--seal-key: required on hardware (a TEE-derived sealing key is not wired yet)")
            sealing_key = _read(args.seal_key)
            if len(sealing_key) != 32:
                raise UserError(f"{args.seal_key}: a sealing key is exactly 32 bytes")
        trusted = {sim.public_fingerprint(sim.load_public(_read(p), p)) for p in args.allow_sim}
        pins = dict(snp.PINNED_ARKS)
        for path in args.pin_ark:
            pins[snp.spki_fingerprint(snp.load_cert(_read(path), path))] = "pinned by --pin-ark"
        tdx_policy = (tdx.TdxPolicy(tdx.load_collateral(_read(args.tdx_collateral), args.tdx_collateral))
                      if args.tdx_collateral else None)
    except EvidenceError as exc:
        raise UserError(str(exc)) from None
    verifier = VerifierConfig(sim_platforms=frozenset(trusted), snp=snp.SnpPolicy(pinned_arks=pins), tdx=tdx_policy)
    try:
        state = State(args.db, domain=args.domain, sealer=Sealer(sealing_key))
    except (StateError, SealedStateError) as exc:
        raise UserError(str(exc)) from None
    except Exception as exc:  # sqlite3.Error: not a database, locked, unwritable
        raise UserError(f"{args.db}: cannot open the state database: {exc}") from None
    broker = Broker(BrokerConfig(args.domain, verified.manifest, verified.measurement, attester, verifier,
                                 period=args.epoch_seconds), state)
    federation = Federation(broker, _peers(args.peer))

    async def main() -> None:
        try:
            running = await server.start(broker, host, port, federation)
        except OSError as exc:
            raise UserError(f"--listen {args.listen}: {exc.strerror or exc}") from None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        label = " (SIMULATED evidence accepted)" if trusted else ""
        print(f"serving domain {args.domain} on {host}:{running.port}{label}; bundle {verified.measurement}",
              flush=True)
        try:
            await stop.wait()
        finally:
            await running.stop()
            state.close()

    asyncio.run(main())
    os.sync()
    return 0


def run_audit(args: argparse.Namespace) -> int:
    import os
    import sqlite3

    from sealnet.runtime.controlplane.state import verify_audit_chain

    if not os.path.isfile(args.db):
        raise UserError(f"{args.db}: no such database")
    try:
        db = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True)
        rows = db.execute("SELECT id, at, event, role, domain, peer, code, reason, detail FROM audit ORDER BY id").fetchall()
        broken = verify_audit_chain(db)
    except sqlite3.Error as exc:
        raise UserError(f"{args.db}: not a control plane database ({exc})") from None
    if args.format == "json":
        print(json.dumps({"chain_intact": broken is None, "first_broken_row": broken,
                          "rows": [dict(zip(("id", "at", "event", "role", "domain", "peer", "code", "reason"), r[:8]),
                                        detail=json.loads(r[8])) for r in rows]}, indent=2))
    else:
        for r in rows:
            simulated = " (SIMULATED evidence)" if json.loads(r[8]).get("simulated") else ""
            print(f"{r[0]:>6} {r[2]:<8} {r[3]:<12} {r[4]:<12} {r[6]:<20} {r[7]}{simulated}")
        print("chain intact" if broken is None else f"chain BROKEN at row {broken}")
    return 0 if broken is None else 1
