"""`sealnet node load|keys|unload|status|run|metrics`: the node agent on one interface.

Every failure is one line on stderr and exit 1 (`NODE_ERRORS` lists what the
runtime raises); nothing here prints a traceback.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, Callable

from sealnet.contracts.errors import OsCallError, UserError

if TYPE_CHECKING:
    from sealnet.runtime.seal_keys import KeyFile


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("node", help="load, unload and inspect the data plane on an interface")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    def where(p: argparse.ArgumentParser) -> None:
        p.add_argument("--iface", required=True)
        p.add_argument("--netns", help="network namespace of the interface (default: this one)")

    def key_permissions(p: argparse.ArgumentParser) -> None:
        p.add_argument("--allow-loose-key-permissions", action="store_true",
                       help="accept a key file that group or others can read (not recommended)")

    def qdisc_bypass(p: argparse.ArgumentParser) -> None:
        p.add_argument("--allow-qdisc-bypass", action="store_true",
                       help="load a sealing policy even where BPF LSM cannot refuse PACKET_QDISC_BYPASS and "
                            "AF_XDP sockets in the namespace: those could send sealed flows in plaintext")

    load = verbs.add_parser("load", help="verify a bundle and attach its programs to an interface")
    load.add_argument("bundle", metavar="BUNDLE")
    where(load)
    load.add_argument("--trust", required=True, metavar="PUBKEY", help="the policy authority's public key")
    load.add_argument("--keys", metavar="FILE",
                      help="static keys (docs/wire-format.md); without them seal traffic is dropped")
    load.add_argument("--force", action="store_true",
                      help="load a policy version older than one this node has run, or an older key epoch")
    key_permissions(load)
    qdisc_bypass(load)
    load.add_argument("--format", choices=("text", "json"), default="text")
    load.set_defaults(func=run_load)

    keys = verbs.add_parser("keys", help="replace the sealing keys of the loaded data plane")
    where(keys)
    keys.add_argument("--keys", required=True, metavar="FILE")
    keys.add_argument("--force", action="store_true", help="accept an epoch older than the running one")
    key_permissions(keys)
    keys.set_defaults(func=run_keys)

    unload = verbs.add_parser("unload", help="detach the programs and undo the interface preparation")
    where(unload)
    unload.add_argument("--open-sealed-flows", action="store_true",
                        help="unload even though the policy seals traffic: that traffic then leaves in plaintext")
    unload.set_defaults(func=run_unload)

    status = verbs.add_parser("status", help="what is loaded on an interface, with rule and verdict counters")
    where(status)
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=run_status)

    run = verbs.add_parser("run", help="run the node agent as a service (SIGTERM stops, SIGHUP reloads)")
    run.add_argument("--iface", action="append", default=[],
                     help="the node's interface; repeat (with --netns each) for one agent serving several nodes")
    run.add_argument("--netns", action="append", default=[],
                     help="network namespace of the interface (default: this one); one per --iface, or one for all")
    run.add_argument("--node-list", metavar="FILE",
                     help="the nodes to serve, as JSON (docs/make.md, 'One agent, several nodes'), instead of --iface")
    run.add_argument("--bundle", metavar="BUNDLE", help="bundle to load at start and on SIGHUP")
    run.add_argument("--trust", metavar="PUBKEY", help="the policy authority's public key (with --bundle)")
    run.add_argument("--keys", metavar="FILE", help="static keys, re-read on SIGHUP")
    run.add_argument("--control", metavar="URL", help="the control plane to take keys from (MAKE, docs/make.md)")
    run.add_argument("--sim-platform", metavar="KEY", help="with --control: attest with a SIMULATED platform key")
    run.add_argument("--sim-launch", metavar="sha384:HEX", help="the launch measurement the simulated platform reports")
    run.add_argument("--allow-sim", metavar="PUBKEY", action="append", default=[],
                     help="with --control: trust a control plane's SIMULATED platform key (labs only)")
    run.add_argument("--metrics", metavar="ADDR", help="also serve Prometheus metrics on HOST:PORT")
    run.add_argument("--grace", type=float, default=30.0, metavar="SECONDS",
                     help="how long the previous key epoch stays accepted after a rotation")
    key_permissions(run)
    qdisc_bypass(run)
    run.set_defaults(func=run_service)

    metrics = verbs.add_parser("metrics", help="serve the counters for Prometheus, labelled by rule, verdict, reason")
    where(metrics)
    metrics.add_argument("--listen", required=True, metavar="ADDR", help="HOST:PORT to listen on")
    metrics.set_defaults(func=run_metrics)


def _node_errors() -> tuple[type[BaseException], ...]:
    from sealnet.runtime import node
    from sealnet.runtime.node_counters import CountersError
    from sealnet.runtime.node_files import NodeFileError
    from sealnet.runtime.node_state import StateError
    from sealnet.runtime.seal_keys import KeyFileError, KeyInstallError

    return (node.NodeError, StateError, CountersError, NodeFileError, KeyFileError, KeyInstallError,
            OsCallError, OSError, ValueError)


def _one_line(what: str, call: Callable[[], Any]) -> Any:
    """Run `call`; any runtime failure becomes a one-line UserError prefixed by `what`."""
    try:
        return call()
    except _node_errors() as exc:
        message = getattr(exc, "strerror", None) if isinstance(exc, OSError) and not str(exc) else str(exc)
        if isinstance(exc, PermissionError):
            message = f"{exc.filename or ''}: permission denied (the node agent needs root)".lstrip(": ")
        raise UserError(f"{what}{message}") from None


def _read_keys(path: str, allow_loose: bool) -> KeyFile:
    from sealnet.runtime.seal_keys import load_key_file

    return _one_line("", lambda: load_key_file(path, allow_loose_permissions=allow_loose))


def load_verified(verified: Any, signer: str, *, iface: str, netns: str | None, keys: KeyFile | None,
                  keys_path: str, force: bool, allow_qdisc_bypass: bool = False) -> Any:
    from sealnet.runtime import node_agent

    return _one_line(f"{iface}: not loaded: ", lambda: node_agent.load_verified(
        verified, signer, iface=iface, netns=netns, keys=keys, keys_path=keys_path, force=force,
        allow_qdisc_bypass=allow_qdisc_bypass))


def run_load(args: argparse.Namespace) -> int:
    from sealnet.runtime.node_agent import verified_bundle

    verified, signer = verified_bundle(args.bundle, args.trust)
    keys = _read_keys(args.keys, args.allow_loose_key_permissions) if args.keys else None
    state = load_verified(verified, signer, iface=args.iface, netns=args.netns, keys=keys,
                          keys_path=args.keys or "<keys>", force=args.force,
                          allow_qdisc_bypass=args.allow_qdisc_bypass)
    if args.format == "json":
        print(json.dumps(state.to_json(), indent=2))
    else:
        print(f"loaded {state.policy} on {args.iface}" + (f" (netns {args.netns})" if args.netns else ""))
        print(f"measurement {state.measurement}")
        for name, tag in state.program_tags.items():
            print(f"{name}: id {state.program_ids[name]}, tag {tag}")
        if state.qdisc_bypass_guard == "accepted-risk":
            print("warning: qdisc bypass NOT refused here (--allow-qdisc-bypass): see `sealnet node status`")
    return 0


def run_keys(args: argparse.Namespace) -> int:
    from sealnet.runtime import node

    keys = _read_keys(args.keys, args.allow_loose_key_permissions)
    state = _one_line(f"{args.iface}: keys not changed: ",
                      lambda: node.install_keys(args.iface, args.netns, keys, args.keys, force=args.force))
    print(f"keys installed on {args.iface}: sender {state.sender}, {len(keys.pairs)} domain pair(s)")
    return 0


def run_unload(args: argparse.Namespace) -> int:
    from sealnet.runtime import node

    problems = _one_line("", lambda: node.unload(args.iface, args.netns, open_sealed_flows=args.open_sealed_flows))
    for p in problems:
        print(f"sealnet: warning: {p}")
    print(f"unloaded {args.iface}")
    return 0


def status_document(iface: str, netns: str | None) -> dict[str, Any]:
    from sealnet.runtime import node, node_counters, node_guard

    state = node.read_state(iface, netns)
    if state is None:
        raise UserError(f"nothing is loaded on {iface}")
    out = state.to_json()
    out["attached"] = node.attached_program_ids(iface, netns)
    out["guard_attached"] = state.qdisc_bypass_guard == node_guard.LSM and node_guard.attached(state.pin_dir)
    out["enforcing"] = out["attached"] == state.program_ids and state.phase == "running" and \
        out["guard_attached"] == (state.qdisc_bypass_guard == node_guard.LSM)
    out["counters"] = node_counters.snapshot(state)
    return out


_GUARD_TEXT = {  # runtime/node_guard.py's values
    "lsm": "refused in this namespace (BPF LSM)",
    "accepted-risk": "NOT refused: --allow-qdisc-bypass on a kernel without BPF LSM; sealed flows can leave in "
                     "plaintext from a packet or AF_XDP socket here",
    "none": "not guarded (the policy seals nothing)",
}


def run_status(args: argparse.Namespace) -> int:
    out = _one_line(f"{args.iface}: ", lambda: status_document(args.iface, args.netns))
    if args.format == "json":
        print(json.dumps(out, indent=2))
        return 0
    print(f"{out['policy']} on {args.iface}: {out['measurement']}")
    if out["phase"] != "running":
        print(f"interrupted {out['phase'][:-3]}: the next load, keys or unload finishes it")
    print(f"attached {out['attached']}" + ("" if out["enforcing"] else " (not what the state says: reload)"))
    print(f"sealing: {'yes' if out['sealing'] else 'no'}" + (f", sender {out['sender']}" if out["sender"] else "")
          + (f", epochs {out['epochs']}" if out["epochs"] else ""))
    print(f"qdisc bypass: {_GUARD_TEXT.get(out['qdisc_bypass_guard'], out['qdisc_bypass_guard'] or 'not recorded')}"
          + ("" if out["guard_attached"] or out["qdisc_bypass_guard"] != "lsm" else " (links missing: reload)"))
    for direction, verdicts in out["counters"]["verdict_hits"].items():
        nonzero = ", ".join(f"{v} {n}" for v, n in verdicts.items() if n)
        print(f"{direction}: {nonzero or 'no packets'}")
    if "replay_evictions" in out["counters"]:
        print(f"replay stream table: {out['counters']['replay_evictions']} streams evicted")
    for r in out["counters"]["rules"]:
        if r["packets"]:
            why = ", ".join(f"{v} {n}" for v, n in r.get("verdicts", {}).items())
            print(f"  {r['direction']} rule {r['name']} (line {r['line']}, {r['action']}): {r['packets']}"
                  + (f" [{why}]" if why else ""))
    return 0


def run_service(args: argparse.Namespace) -> int:
    from sealnet.runtime import node_agent, node_group, node_list

    if args.bundle and not args.trust:
        raise UserError("--bundle needs --trust")
    if bool(args.node_list) == bool(args.iface):
        raise UserError("node run: give --iface (repeatable) or --node-list FILE, not both")
    if args.node_list and args.netns:
        raise UserError("--netns: with --node-list, each node's netns is in the file")
    specs = node_list.read(args.node_list) if args.node_list else node_list.from_arguments(args.iface, args.netns)
    config = node_agent.AgentConfig(
        iface=specs[0].iface, netns=specs[0].netns, bundle=args.bundle, trust=args.trust, keys=args.keys,
        control=args.control, metrics=args.metrics, grace=args.grace,
        allow_loose_key_permissions=args.allow_loose_key_permissions, sim_platform=args.sim_platform,
        allow_qdisc_bypass=args.allow_qdisc_bypass,
        sim_launch=args.sim_launch, allow_sim=tuple(args.allow_sim))
    if len(specs) == 1 and not args.node_list:
        return int(_one_line("", lambda: node_agent.run(config)))
    return int(_one_line("", lambda: node_group.run(config, specs)))


def run_metrics(args: argparse.Namespace) -> int:
    from sealnet.runtime import node_metrics

    return int(_one_line("", lambda: node_metrics.serve_forever(args.iface, args.netns, args.listen)))
