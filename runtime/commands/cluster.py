"""`sealnet cluster up|status|down`: a federation out of network namespaces,
running the same node agents (and control planes) a deployment runs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from sealnet.runtime.cluster.lifecycle import DEFAULT_STATE_DIR, KEY_SOURCES

    parser = sub.add_parser("cluster", help="bring a policy's federation up on this machine, report on it, take it down")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    up = verbs.add_parser("up", help="compile and sign the bundle, build the domains' namespaces, start the nodes")
    up.add_argument("policy", metavar="POLICY")
    up.add_argument("--nodes", type=int, default=2, metavar="N", help="nodes per domain (default 2)")
    up.add_argument("--state", default=DEFAULT_STATE_DIR, metavar="DIR",
                    help=f"where the cluster is recorded (default {DEFAULT_STATE_DIR})")
    up.add_argument("--keys", dest="key_source", choices=KEY_SOURCES, default="control",
                    help="where nodes take their keys from: control (default: each node attests to its domain's "
                         "control plane, SIMULATED evidence here) or static (key files the cluster writes)")
    up.add_argument("--nodes-per-agent", type=int, metavar="K",
                    help="nodes one `sealnet node run` process serves (default: 1 for domains of up to 4 nodes, "
                         "else 2 agent processes per domain)")
    up.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS")
    up.add_argument("--format", choices=("text", "json"), default="text")
    up.set_defaults(func=run_up)

    status = verbs.add_parser("status", help="the cluster's hosts, processes and per-rule counters")
    status.add_argument("--state", default=DEFAULT_STATE_DIR, metavar="DIR")
    status.add_argument("--format", choices=("text", "json"), default="text")
    status.set_defaults(func=run_status)

    down = verbs.add_parser("down", help="stop everything the cluster started and remove what it created")
    down.add_argument("--state", default=DEFAULT_STATE_DIR, metavar="DIR")
    down.add_argument("--format", choices=("text", "json"), default="text")
    down.set_defaults(func=run_down)


class _Display:
    """Progress bars on a terminal, one line per finished phase otherwise."""

    def __init__(self, enabled: bool) -> None:
        self.progress: Any = None
        self.task: Any = None
        if enabled and sys.stderr.isatty():
            try:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
            except ImportError:
                return
            self.progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), transient=False)
            self.progress.start()
        self.enabled = enabled

    def phase_started(self, name: str, total: int) -> None:
        if self.progress is not None:
            self.task = self.progress.add_task(name, total=max(total, 1))

    def advanced(self, done: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=done)

    def phase_done(self, name: str, seconds: float, detail: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total)
            self.progress.console.print(f"  [green]✓[/green] {name}: {detail} ({seconds * 1000:.0f} ms)")
        elif self.enabled:
            print(f"{name:<16} {seconds * 1000:9.1f} ms  {detail}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def run_up(args: argparse.Namespace) -> int:
    from sealnet.contracts.errors import UserError
    from sealnet.runtime.cluster import lifecycle

    if args.nodes < 1:
        raise UserError("--nodes: at least 1")
    display = _Display(args.format == "text")
    try:
        state = lifecycle.up(args.policy, args.nodes, os.path.abspath(args.state), key_source=args.key_source,
                             observer=display, timeout=args.timeout, nodes_per_agent=args.nodes_per_agent)
    finally:
        display.close()
    layout = state.layout
    assert layout is not None
    if args.format == "json":
        print(json.dumps({"cluster": state.cluster_id, "state": state.directory, "hosts": len(layout.hosts),
                          "phases_s": state.phases, "total_s": sum(state.phases.values()),
                          "key_source": state.key_source}, indent=2))
        return 0
    total = sum(state.phases.values())
    print(f"cluster {state.cluster_id} up: {len(layout.hosts)} hosts in {total:.2f} s "
          f"({', '.join(f'{k} {v:.2f} s' for k, v in state.phases.items())})")
    if state.key_source == "control":
        print("attestation: SIMULATED evidence (no TEE on this machine): every node attested to its domain's "
              "control plane, which released its keys over MAKE")
    else:
        print("attestation: none; keys are static files (not released by an attested control plane)")
    print(f"next: sealnet cluster status --state {state.directory}")
    return 0


def _control_plane_status(host: Any) -> dict[str, Any]:
    """GET /v1/status of a control plane, from inside its namespace."""
    import urllib.request

    from sealnet.runtime import netns

    def fetch() -> dict[str, Any]:
        with urllib.request.urlopen(f"http://{host.address}:{host.port}/v1/status", timeout=3) as resp:
            return dict(json.loads(resp.read(1 << 16)))

    try:
        return netns.run_in_netns(host.netns, fetch)
    except Exception as exc:  # reported, not fatal: status says what it could not reach
        return {"error": f"{type(exc).__name__}: {exc}"}


def _status_document(state_dir: str) -> dict[str, Any]:
    from sealnet.runtime import netns
    from sealnet.runtime.cluster import lifecycle
    from sealnet.runtime.commands.node import status_document

    state = lifecycle.load(state_dir)
    layout = state.layout
    hosts = []
    for host in layout.hosts if layout else []:
        entry: dict[str, Any] = {"name": host.name, "domain": host.domain, "role": host.role,
                                 "address": host.address, "netns": host.netns,
                                 "netns_present": netns.netns_exists(host.netns)}
        procs = [p for p in state.processes if host.name in p.hosts]
        entry["processes"] = [{"role": p.role, "pid": p.pid, "running": lifecycle.alive(p), "log": p.log}
                              for p in procs]
        if host.role == "control" and entry["netns_present"] and any(lifecycle.alive(p) for p in procs):
            entry["control_plane"] = _control_plane_status(host)
        if any(p.role == "node" for p in procs) and entry["netns_present"]:
            try:
                entry["data_plane"] = status_document(lifecycle.UPLINK, host.netns)
            except Exception as exc:  # a node that is down is reported, not fatal
                entry["data_plane"] = {"error": str(exc).splitlines()[0] if str(exc) else repr(exc)}
        hosts.append(entry)
    return {"cluster": state.cluster_id, "policy": state.policy, "complete": state.complete,
            "key_source": state.key_source, "bundle": state.bundle, "phases_s": state.phases,
            "wan_netns": layout.wan_netns if layout else None, "hosts": hosts}


def run_status(args: argparse.Namespace) -> int:
    doc = _status_document(os.path.abspath(args.state))
    if args.format == "json":
        print(json.dumps(doc, indent=2))
        return 0
    print(f"cluster {doc['cluster']}: {doc['policy']} ({'up' if doc['complete'] else 'incomplete'}), "
          f"wan namespace {doc['wan_netns']}, keys: {doc['key_source']}")
    healthy = True
    for h in doc["hosts"]:
        procs = ", ".join(f"{p['role']} pid {p['pid']} {'running' if p['running'] else 'NOT RUNNING'}"
                          for p in h["processes"]) or "no agent"
        healthy &= h["netns_present"] and all(p["running"] for p in h["processes"])
        print(f"  {h['name']:<16} {h['address']:<15} {procs}")
        cp = h.get("control_plane")
        if cp:
            print(f"  {'':<16} " + (f"control plane: {cp['error']}" if "error" in cp else
                                     f"control plane of {cp['domain']}, epoch {cp['epoch']} (period {cp['period']} s)"
                                     + (", SIMULATED evidence accepted" if cp.get("simulated") else "")))
        dp = h.get("data_plane")
        if dp and "error" not in dp:
            rules = [f"{r['direction']} {r['name']} {r['packets']}" for r in dp["counters"]["rules"] if r["packets"]]
            print(f"  {'':<16} {'sealing' if dp['sealing'] else 'NOT sealing'}; rule packets: "
                  f"{', '.join(rules) or 'none yet'}")
        elif dp:
            print(f"  {'':<16} data plane: {dp['error']}")
    return 0 if healthy else 1


def run_down(args: argparse.Namespace) -> int:
    from sealnet.runtime.cluster import lifecycle

    display = _Display(args.format == "text")
    try:
        report = lifecycle.down(os.path.abspath(args.state), observer=display)
    finally:
        display.close()
    if args.format == "json":
        print(json.dumps(report.__dict__, indent=2))
    else:
        print(f"cluster down: {report.stopped} processes stopped, {report.unloaded} data planes unloaded, "
              f"{report.namespaces} namespaces removed")
        for problem in report.problems:
            print(f"  note: {problem}")
    return 0
