"""`sealnet node load|keys|unload|status`: the node agent's loader on one interface."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from sealnet.contracts.errors import UserError

if TYPE_CHECKING:
    from sealnet.runtime.seal_keys import KeyFile


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("node", help="load, unload and inspect the data plane on an interface")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    load = verbs.add_parser("load", help="verify a bundle and attach its programs to an interface")
    load.add_argument("bundle", metavar="BUNDLE")
    load.add_argument("--iface", required=True)
    load.add_argument("--netns", help="network namespace of the interface (default: this one)")
    load.add_argument("--trust", required=True, metavar="PUBKEY", help="the policy authority's public key")
    load.add_argument("--keys", metavar="FILE",
                      help="static keys (docs/wire-format.md); without them seal traffic is dropped")
    load.add_argument("--format", choices=("text", "json"), default="text")
    load.set_defaults(func=run_load)

    keys = verbs.add_parser("keys", help="replace the sealing keys of the loaded data plane")
    keys.add_argument("--iface", required=True)
    keys.add_argument("--netns")
    keys.add_argument("--keys", required=True, metavar="FILE")
    keys.set_defaults(func=run_keys)

    unload = verbs.add_parser("unload", help="detach the programs and undo the interface preparation")
    unload.add_argument("--iface", required=True)
    unload.add_argument("--netns")
    unload.set_defaults(func=run_unload)

    status = verbs.add_parser("status", help="what is loaded on an interface, with rule and verdict counters")
    status.add_argument("--iface", required=True)
    status.add_argument("--netns")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=run_status)


def _read_keys(path: str) -> KeyFile:
    from sealnet.runtime.seal_keys import KeyFileError, load_key_file

    try:
        return load_key_file(path)
    except KeyFileError as exc:
        raise UserError(str(exc)) from None


def run_load(args: argparse.Namespace) -> int:
    from sealnet.contracts.bundle import BundleError, load_bundle
    from sealnet.contracts.signing import load_public
    from sealnet.runtime import node
    from sealnet.contracts.libbpf import LibbpfError
    from sealnet.runtime.seal_keys import KeyFileError, KeyInstallError

    key = load_public(args.trust)
    keys = _read_keys(args.keys) if args.keys else None
    try:
        with open(args.bundle, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UserError(f"{args.bundle}: cannot read: {exc.strerror}") from None
    try:
        verified = load_bundle(data, key)
    except BundleError as exc:
        raise UserError(f"{args.bundle}: refused, nothing loaded: {exc}") from None
    policy = verified.manifest.get("policy", {})
    domain_ids = {d["name"]: d["id"] for d in verified.manifest.get("domains", [])}
    try:
        state = node.load_object(verified.object_bytes, iface=args.iface, netns=args.netns,
                                 measurement=verified.measurement,
                                 policy=f"{policy.get('name')} version {policy.get('version')}",
                                 domain_ids=domain_ids, keys=keys, keys_path=args.keys or "<keys>")
    except (KeyFileError, KeyInstallError) as exc:
        raise UserError(f"{args.iface}: not loaded: {exc}") from None
    except (LibbpfError, node.NodeError, OSError) as exc:
        raise UserError(f"{args.iface}: not loaded: {exc}") from None
    if args.format == "json":
        print(json.dumps(state.to_json(), indent=2))
    else:
        print(f"loaded {state.policy} on {args.iface}" + (f" (netns {args.netns})" if args.netns else ""))
        print(f"measurement {state.measurement}")
        for name, tag in state.program_tags.items():
            print(f"{name}: id {state.program_ids[name]}, tag {tag}")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    from sealnet.runtime import node
    from sealnet.contracts.libbpf import LibbpfError
    from sealnet.runtime.seal_keys import KeyFileError, KeyInstallError

    keys = _read_keys(args.keys)
    try:
        state = node.install_keys(args.iface, args.netns, keys, args.keys)
    except (KeyFileError, KeyInstallError, LibbpfError, node.NodeError, OSError) as exc:
        raise UserError(f"{args.iface}: keys not changed: {exc}") from None
    print(f"keys installed on {args.iface}: sender {state.sender}, {len(keys.pairs)} domain pair(s)")
    return 0


def run_unload(args: argparse.Namespace) -> int:
    from sealnet.runtime import node

    try:
        problems = node.unload(args.iface, args.netns)
    except node.NodeError as exc:
        raise UserError(str(exc)) from None
    for p in problems:
        print(f"sealnet: warning: {p}")
    print(f"unloaded {args.iface}")
    return 0


def run_status(args: argparse.Namespace) -> int:
    from sealnet.runtime import node
    from sealnet.contracts.libbpf import Map, get_pinned

    state = node.read_state(args.iface, args.netns)
    if state is None:
        raise UserError(f"nothing is loaded on {args.iface}")
    from sealnet.compiler.codegen import VERDICTS

    counters: dict[str, object] = {}
    for name in node.PINNED_MAPS:
        m = Map.from_fd(get_pinned(f"{state.pin_dir}/{name}"), owns_fd=True)
        values = [m.sum_percpu_u64(i.to_bytes(4, "little")) for i in range(m.max_entries)]
        m.close()
        if name == "verdict_hits":  # slot dir * len(VERDICTS) + verdict
            counters[name] = {direction: {v: values[d * len(VERDICTS) + i] for i, v in enumerate(VERDICTS)}
                              for d, direction in enumerate(("egress", "ingress"))}
        else:
            counters[name] = values
    out = {**state.to_json(), "attached": node.attached_program_ids(args.iface, args.netns), "counters": counters}
    if args.format == "json":
        print(json.dumps(out, indent=2))
    else:
        print(f"{state.policy} on {args.iface}: {state.measurement}")
        print(f"attached {out['attached']}")
        print(f"sealing: {'yes' if state.sealing else 'no'}" + (f", sender {state.sender}" if state.sender else ""))
        for direction, verdicts in counters["verdict_hits"].items():  # type: ignore[union-attr]
            nonzero = ", ".join(f"{v} {n}" for v, n in verdicts.items() if n)
            print(f"{direction}: {nonzero or 'no packets'}")
        print(f"rule_hits: {counters['rule_hits']}")
    return 0
