"""A checked policy as readable tables (`policyc explain`)."""

from __future__ import annotations

from typing import Any

from sealnet.compiler.ir import ADDR_MAX, FULL_ADDR, complement, FULL_PORT, FULL_PROTO, PROTO_NAMES, Cube, IntervalSet, Policy, interval_prefixes


def addresses_text(intervals: IntervalSet) -> str:
    if intervals == FULL_ADDR:
        return "any"
    if not intervals:
        return "none"
    nets = [str(n) for n in interval_prefixes(intervals)]
    excluded = [str(n) for n in interval_prefixes(complement(intervals, ADDR_MAX))]
    if len(excluded) < len(nets):
        return "all but " + ", ".join(excluded)
    return ", ".join(nets) if len(nets) <= 6 else ", ".join(nets[:6]) + f", ... ({len(nets)} CIDRs)"


def protocols_text(intervals: IntervalSet) -> str:
    if intervals == FULL_PROTO:
        return "any"
    names = []
    for lo, hi in intervals:
        for p in range(lo, hi + 1):
            names.append(PROTO_NAMES.get(p, str(p)))
            if len(names) > 8:
                return ", ".join(names[:8]) + ", ..."
    return ", ".join(names)


def ports_text(intervals: IntervalSet) -> str:
    if intervals == FULL_PORT:
        return "any"
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in intervals)


def cube_row(cube: Cube) -> dict[str, str]:
    return {"src": addresses_text(cube.src), "dst": addresses_text(cube.dst),
            "proto": protocols_text(cube.proto), "dport": ports_text(cube.dport)}


def explain_json(policy: Policy) -> dict[str, Any]:
    return {
        "policy": policy.name,
        "version": policy.version,
        "domains": [
            {"id": d.id, "name": d.name, "tee": d.tee.value, "nodes": [str(p) for p in d.prefixes],
             "measurements": list(d.measurements), "control_plane": d.control_plane}
            for d in policy.domains
        ],
        "workflows": [
            {"name": w.name,
             "stages": [{"name": s.name, "domain": s.domain, "ports": ports_text(s.ports) if s.ports else "any"}
                        for s in w.stages],
             "flows": [{"src": f.src, "dst": f.dst, "proto": PROTO_NAMES.get(f.proto, "any") if f.proto else "any"}
                       for f in w.flows]}
            for w in policy.workflows
        ],
        "rules": [
            {"index": r.index, "name": r.name, "action": r.action.value, "plaintext": r.plaintext_ok,
             "line": r.span.line, "source": r.source_text, "expansion": [cube_row(c) for c in r.match.cubes]}
            for r in policy.rules
        ],
        "default": policy.default.value,
    }


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return [line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows]


def explain_text(policy: Policy) -> str:
    data = explain_json(policy)
    out = [f'policy "{policy.name}" version {policy.version}', "", "Domains"]
    out += _table(["id", "name", "tee", "nodes", "measurements", "control plane"],
                  [[str(d["id"]), d["name"], d["tee"], ", ".join(d["nodes"]) or "-",
                    str(len(d["measurements"])), d["control_plane"] or "-"] for d in data["domains"]])
    for w in data["workflows"]:
        out += ["", f"Workflow {w['name']}"]
        out += _table(["stage", "domain", "ports"], [[s["name"], s["domain"], s["ports"]] for s in w["stages"]])
        for f in w["flows"]:
            out.append(f"  flow {f['src']} -> {f['dst']} ({f['proto']})")
    out += ["", "Rules (first match decides)"]
    rows = []
    for r in data["rules"]:
        action = r["action"] + (" plaintext" if r["plaintext"] else "")
        expansion = r["expansion"] or [{"src": "(matches nothing)", "dst": "", "proto": "", "dport": ""}]
        for i, cube in enumerate(expansion):
            head = [str(r["index"] + 1), r["name"], action] if i == 0 else ["", "", ""]
            rows.append(head + [cube["src"], cube["dst"], cube["proto"], cube["dport"]])
    out += _table(["#", "rule", "action", "source", "destination", "proto", "dport"], rows)
    out += ["", f"default: {data['default']}"]
    return "\n".join(out)
