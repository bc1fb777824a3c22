"""`policyc inspect BUNDLE [--trust PUBKEY]`: measurement, manifest, signature.

JSON (`--format json`): {"bundle", "measurement", "policy": {"name", "version"},
"domains", "cipher_suite", "aes_implementation", "toolchain", "programs",
"maps", "object_bytes", "signature": "valid" | "invalid" | "unchecked",
"trusted_key"}. Exit 1 when the bundle is malformed, inconsistent, or its
signature does not hold under --trust.
"""

from __future__ import annotations

import argparse
import json

from sealnet.contracts.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("inspect", help="show a bundle's measurement and manifest, and check its signature")
    parser.add_argument("bundle", metavar="BUNDLE")
    parser.add_argument("--trust", metavar="PUBKEY", help="the authority's public key to check the signature with")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sealnet.contracts.bundle import BundleError, check_consistency, check_signature, parse
    from sealnet.contracts.signing import fingerprint, load_public

    key = load_public(args.trust) if args.trust else None
    try:
        with open(args.bundle, "rb") as fh:
            data = fh.read()
    except IsADirectoryError:
        raise UserError(f"{args.bundle}: is a directory, not a bundle") from None
    except OSError as exc:
        raise UserError(f"{args.bundle}: cannot read: {exc.strerror}") from None
    try:
        bundle = parse(data)
        measurement = check_consistency(bundle)
    except BundleError as exc:
        raise UserError(f"{args.bundle}: refused: {exc}") from None
    signature = "unchecked" if key is None else ("valid" if check_signature(bundle, key) else "invalid")
    m = bundle.manifest
    info = {
        "bundle": args.bundle, "measurement": measurement, "policy": m.get("policy"),
        "domains": m.get("domains"), "cipher_suite": m.get("cipher_suite"),
        "aes_implementation": m.get("aes_implementation"), "toolchain": m.get("toolchain"),
        "programs": m.get("programs"), "maps": m.get("maps"), "object_bytes": len(bundle.object_bytes),
        "signature": signature, "trusted_key": fingerprint(key) if key else None,
    }
    if args.format == "json":
        print(json.dumps(info, indent=2))
    else:
        policy = m.get("policy") or {}
        print(f"bundle       {args.bundle}")
        print(f"measurement  {measurement}")
        print(f"policy       {policy.get('name')} version {policy.get('version')}")
        driver = f" ({m.get('aes_implementation')})" if m.get("cipher_suite") == "aes-ccm" else ""
        print(f"cipher suite {m.get('cipher_suite')}{driver}")
        print(f"toolchain    policyc {m.get('toolchain', {}).get('policyc')}, clang {m.get('toolchain', {}).get('clang')}")
        for d in m.get("domains", []):
            print(f"domain       {d['name']} (tee {d['tee']}) nodes {', '.join(d['nodes']) or '-'}")
        for p in m.get("programs", []):
            print(f"program      {p['name']} ({p['section']})")
        for mp in m.get("maps", []):
            print(f"map          {mp['name']}: type {mp['type']}, {mp['key_size']}/{mp['value_size']} bytes x {mp['max_entries']}")
        if key is None:
            print("signature    unchecked (give --trust PUBKEY to check it)")
        else:
            print(f"signature    {signature} under {fingerprint(key)}")
    return 1 if signature == "invalid" else 0
