"""`policyc keygen KEY`: a new Ed25519 key pair for the policy authority (KEY, KEY.pub)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("keygen", help="create the policy authority's Ed25519 signing key")
    parser.add_argument("key", metavar="KEY", help="private key file to create (mode 0600); KEY.pub is the public key")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sealnet.contracts.signing import generate  # cryptography: only when a key is made

    fp = generate(args.key, args.key + ".pub")
    print(f"wrote {args.key} (private, 0600) and {args.key}.pub; fingerprint {fp}")
    return 0
