"""`sealnet attest verify|sim-keygen`: check TEE evidence offline; make a simulated platform key."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re

from sealnet.contracts.errors import UserError

HEX_RE = re.compile(rb"^[0-9a-fA-F\s]+$")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("attest", help="verify TEE evidence offline (SEV-SNP, TDX, simulated)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    verify = verbs.add_parser("verify", help="verify a SEV-SNP report or a TDX quote; exit 0 when it verifies")
    verify.add_argument("--tee", required=True, choices=("sev-snp", "tdx", "sim"))
    verify.add_argument("--evidence", required=True, metavar="FILE", help="the raw report or quote, binary or hex")
    verify.add_argument("--vcek", metavar="FILE", help="sev-snp: the VCEK (or VLEK), DER or PEM")
    verify.add_argument("--ask", metavar="FILE", help="sev-snp: AMD's ASK, PEM")
    verify.add_argument("--ark", metavar="FILE", help="sev-snp: AMD's ARK, PEM (must be a pinned root)")
    verify.add_argument("--pin-ark", metavar="FILE", action="append", default=[],
                        help="sev-snp: also trust this ARK (a lab's own root; never for production)")
    verify.add_argument("--crl", metavar="FILE", action="append", default=[],
                        help="sev-snp: AMD's CRL (DER or PEM, signed by the ARK); revoked ASK or VCEK fail")
    verify.add_argument("--allow-debug", action="store_true", help="sev-snp: accept a guest policy that allows debug")
    verify.add_argument("--min-tcb", metavar="NAME=SVN,...", default="",
                        help="sev-snp: minimum reported TCB, e.g. bootloader=3,tee=0,snp=8,microcode=115")
    verify.add_argument("--collateral", metavar="FILE", help="tdx: Intel PCS collateral as JSON")
    verify.add_argument("--root-ca", metavar="FILE", help="tdx: trust this root CA instead of Intel's (labs only)")
    verify.add_argument("--at", metavar="TIME", help="RFC 3339 time at which validity is judged (default: now)")
    verify.add_argument("--platform", metavar="PUBKEY", help="sim: the simulated platform's public key (PEM)")
    verify.add_argument("--report-data", metavar="HEX", help="also require this report data (64 bytes, hex)")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(func=run_verify)

    keygen = verbs.add_parser("sim-keygen", help="create a simulated platform key (KEY, KEY.pub): labs and tests")
    keygen.add_argument("key", metavar="KEY")
    keygen.set_defaults(func=run_sim_keygen)


def _read(path: str | None, flag: str) -> bytes:
    if not path:
        raise UserError(f"{flag} is required for this TEE")
    try:
        with open(path, "rb") as fh:
            return fh.read(1 << 20)
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None


def _evidence_bytes(path: str) -> bytes:
    data = _read(path, "--evidence")
    if data and HEX_RE.match(data):
        try:
            return bytes.fromhex(data.decode())
        except ValueError:
            raise UserError(f"{path}: hex with an odd number of digits") from None
    return data


def _at(text: str | None) -> dt.datetime:
    if not text:
        return dt.datetime.now(dt.timezone.utc)
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--at: {text!r} is not an RFC 3339 time") from None
    if value.tzinfo is None:
        raise UserError(f"--at: {text!r} has no time zone (write Z or +00:00)")
    return value.astimezone(dt.timezone.utc)


def _min_tcb(text: str) -> dict[str, int]:
    from sealnet.runtime.attest.snp import TCB_FIELDS

    out: dict[str, int] = {}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in TCB_FIELDS or not value.isdigit() or int(value) > 255:
            raise UserError(f"--min-tcb: {part!r} is not NAME=SVN with NAME one of {', '.join(TCB_FIELDS)}")
        out[name] = int(value)
    return out


def run_verify(args: argparse.Namespace) -> int:
    from sealnet.runtime.attest import sim, snp, tdx
    from sealnet.runtime.attest.evidence import Evidence, EvidenceError

    report = _evidence_bytes(args.evidence)
    at = _at(args.at)
    try:
        if args.tee == "sev-snp":
            pins = dict(snp.PINNED_ARKS)
            for path in args.pin_ark:
                pins[snp.spki_fingerprint(snp.load_cert(_read(path, "--pin-ark"), path))] = "pinned by --pin-ark"
            certs = {"vcek": _read(args.vcek, "--vcek"), "ask": _read(args.ask, "--ask"), "ark": _read(args.ark, "--ark")}
            policy = snp.SnpPolicy(pinned_arks=pins, allow_debug=args.allow_debug, min_tcb=_min_tcb(args.min_tcb),
                                   at=at, crls=tuple(_read(p, "--crl") for p in args.crl))
            verified = snp.verify(Evidence("sev-snp", report, certs), policy)
        elif args.tee == "tdx":
            collateral = tdx.load_collateral(_read(args.collateral, "--collateral"), args.collateral)
            root = _read(args.root_ca, "--root-ca") if args.root_ca else None
            verified = tdx.verify(Evidence("tdx", report), tdx.TdxPolicy(collateral, at=at, root_ca=root))
        else:
            key = sim.load_public(_read(args.platform, "--platform"), args.platform)
            certs = {"platform": sim.spki_der(key)}
            verified = sim.verify(Evidence("sim", report, certs), {sim.public_fingerprint(key)})
    except EvidenceError as exc:
        raise UserError(f"{args.evidence}: does not verify: {exc}") from None
    if args.report_data is not None:
        try:
            expected = bytes.fromhex(args.report_data)
        except ValueError:
            raise UserError("--report-data: not hexadecimal") from None
        if expected.ljust(64, b"\0") != verified.report_data:
            raise UserError(f"{args.evidence}: does not verify: report data is not the expected value")
    out = {"verified": True, **verified.to_json()}
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        label = " SIMULATED (no hardware root)" if verified.simulated else ""
        print(f"verified {verified.tee}{label}: TCB {verified.tcb_status}")
        print(f"launch measurement {verified.launch_measurement}")
        for name in ("rtmr0", "rtmr1", "rtmr2", "rtmr3"):
            if name in out:
                print(f"{name} {out[name]}")
        print(f"report data {verified.report_data.hex()}")
    return 0


def run_sim_keygen(args: argparse.Namespace) -> int:
    import os

    from sealnet.runtime.attest.sim import SimPlatform

    for path in (args.key, args.key + ".pub"):
        if os.path.exists(path):
            raise UserError(f"{path}: already exists; refusing to overwrite a key")
    platform = SimPlatform.generate(bytes(48))
    platform.save(args.key)
    with open(args.key + ".pub", "wb") as fh:
        fh.write(platform.public_pem())
    print(f"wrote {args.key} (simulated platform key, 0600) and {args.key}.pub: SIMULATED, no hardware root")
    return 0
