"""Prometheus export of the data plane's counters, read from the pins on every scrape.

Two counter families, the same numbers `sealnet node status` shows:
- sealnet_rule_packets_total{iface, direction, rule, action, line}
- sealnet_verdict_packets_total{iface, direction, verdict, reason}
  where `verdict` is pass or drop and `reason` the data plane's verdict name
  (seal_replay_drop, deny_drop, ...);
- sealnet_replay_evictions_total{iface}: streams evicted from a sealing load's
  replay stream table (docs/wire-format.md, "The stream table").
"""

from __future__ import annotations

import threading
from typing import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import start_http_server
from prometheus_client.registry import Collector, CollectorRegistry

from sealnet.contracts.abi import Verdict
from sealnet.runtime import node, node_counters
from sealnet.runtime.node_state import NodeState, read_state

PASSING = frozenset(v.label for v in Verdict if v.passes)  # TC_ACT_OK verdicts


class NodeCollector(Collector):
    def __init__(self, interfaces: Iterable[tuple[str, str | None]], state_dir: str) -> None:
        self.interfaces = list(interfaces)
        self.state_dir = state_dir

    def _states(self) -> Iterator[tuple[str, NodeState]]:
        for iface, netns in self.interfaces:
            state = read_state(self.state_dir, iface, netns)
            if state is not None:
                yield iface, state

    def collect(self) -> Iterator[Metric]:
        rules = CounterMetricFamily("sealnet_rule_packets", "Packets decided by each policy rule",
                                    labels=["iface", "direction", "rule", "action", "line"])
        verdicts = CounterMetricFamily("sealnet_verdict_packets", "Packets by verdict and reason",
                                       labels=["iface", "direction", "verdict", "reason"])
        rule_verdicts = CounterMetricFamily("sealnet_rule_verdict_packets",
                                            "Packets of each policy rule by verdict and reason",
                                            labels=["iface", "direction", "rule", "line", "verdict", "reason"])
        loaded = GaugeMetricFamily("sealnet_policy_info", "The policy running on an interface",
                                   labels=["iface", "policy", "measurement", "phase"])
        evictions = CounterMetricFamily("sealnet_replay_evictions", "Streams evicted from the replay stream table",
                                        labels=["iface"])
        for iface, state in self._states():
            loaded.add_metric([iface, state.policy, state.measurement, state.phase], 1)
            try:
                for r in node_counters.rule_counts(state):
                    rules.add_metric([iface, r.direction, r.name, r.action, str(r.line)], r.packets)
                    for reason, n in r.verdicts.items():
                        rule_verdicts.add_metric([iface, r.direction, r.name, str(r.line),
                                                  "pass" if reason in PASSING else "drop", reason], n)
                for direction, counts in node_counters.verdict_counts(state).items():
                    for reason, n in counts.items():
                        verdicts.add_metric([iface, direction, "pass" if reason in PASSING else "drop", reason], n)
                evicted = node_counters.replay_evictions(state)
                if evicted is not None:
                    evictions.add_metric([iface], evicted)
            except node_counters.CountersError:
                continue  # a load in progress: the next scrape sees it
        yield from (rules, verdicts, rule_verdicts, loaded, evictions)


def registry_for(interfaces: Iterable[tuple[str, str | None]], state_dir: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(interfaces, state_dir))
    return registry


def parse_listen(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--listen {addr!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def start(interfaces: Iterable[tuple[str, str | None]], state_dir: str, addr: str) -> object:
    """Serve /metrics in a background thread; returns the server (call .shutdown() to stop)."""
    host, port = parse_listen(addr)
    server, _thread = start_http_server(port, addr=host, registry=registry_for(interfaces, state_dir))
    return server


def serve_forever(iface: str, netns: str | None, addr: str) -> int:
    start([(iface, netns)], node.STATE_DIR, addr)
    threading.Event().wait()
    return 0
