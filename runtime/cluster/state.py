"""A cluster's record in its state directory: what `up` created, so that
`status` can report on it and `down` can remove it, also after a crash.

The record is rewritten (atomically) after every step of `up`, before the
next one starts: whatever exists has been recorded, or is found by its name
prefix (namespaces) at teardown.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from sealnet.compiler.output import write_atomically
from sealnet.contracts.errors import UserError
from sealnet.runtime.cluster.topology import Layout

STATE_FILE = "cluster.json"
FORMAT = 1


class ClusterError(UserError):
    """`up`, `down` or `status` cannot go on; one line naming what and where."""


@dataclass
class Process:
    """A process `up` started: the same command a real deployment runs."""

    role: str  # "controlplane" | "node"
    host: str  # the Host's name (of an agent serving several nodes: the first)
    pid: int
    argv: list[str]
    log: str
    serves: list[str] = field(default_factory=list)  # a node agent's nodes (Host names); [] means [host]

    @property
    def hosts(self) -> list[str]:
        return self.serves or [self.host]


@dataclass
class ClusterState:
    directory: str
    policy: str
    cluster_id: str
    nodes_per_domain: int
    key_source: str  # how nodes get keys: "static" (files the cluster writes) or "control"
    layout: Layout | None = None
    bundle: str | None = None
    authority_public: str | None = None
    processes: list[Process] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)  # phase -> seconds, in order
    complete: bool = False

    @property
    def path(self) -> str:
        return os.path.join(self.directory, STATE_FILE)

    def file(self, *parts: str) -> str:
        return os.path.join(self.directory, *parts)

    def save(self) -> None:
        doc: dict[str, Any] = {"format": FORMAT, **asdict(self)}
        doc.pop("directory")
        doc["layout"] = self.layout.to_json() if self.layout else None
        write_atomically(self.path, json.dumps(doc, indent=1).encode())

    @classmethod
    def load(cls, directory: str) -> ClusterState | None:
        path = os.path.join(directory, STATE_FILE)
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: unreadable cluster state: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UserError(f"{path}: not a cluster state file of format {FORMAT}")
        try:
            layout = Layout.from_json(doc["layout"]) if doc.get("layout") else None
            processes = [Process(**p) for p in doc.get("processes", [])]
            return cls(directory=directory, policy=doc["policy"], cluster_id=doc["cluster_id"],
                       nodes_per_domain=int(doc["nodes_per_domain"]), key_source=doc["key_source"],
                       layout=layout, bundle=doc.get("bundle"), authority_public=doc.get("authority_public"),
                       processes=processes, phases=dict(doc.get("phases", {})), complete=bool(doc.get("complete")))
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: damaged cluster state ({exc})") from None
