"""The language server on a large policy, timed as an editor sees it (JSON-RPC over stdio).

Run: .venv/bin/python benchmarks/bench_lsp.py [RULES=2000] [EDITS=5]

Figures, each the median over EDITS edits of one rule's action:
- checker diagnostics: edit sent -> first publishDiagnostics for that version;
- verifier findings: edit sent -> publishDiagnostics for that version with V-codes;
- hover: request -> answer, on a domain name in a rule, with the server idle
  and while a verification runs.
Baseline, measured in the same run: parse + check of the whole text in this
process (what the server would cost per keystroke without its caches), and
`verify` alone.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # lsp_wire
from gen_policy import generate  # noqa: E402
from lsp_wire import LspProcess as Server  # noqa: E402

from sealnet.compiler.frontend import compile_text  # noqa: E402
from sealnet.compiler.verify import verify  # noqa: E402

URI = "file:///bench/large.policy"


def diagnostics_for(version: int, findings: bool):
    def match(m: dict) -> bool:
        if m.get("method") != "textDocument/publishDiagnostics" or m["params"].get("version") != version:
            return False
        return not findings or any(str(d.get("code", "")).startswith("V") for d in m["params"]["diagnostics"])
    return match


def main() -> None:
    rules = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    edits = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    text = generate(rules)
    lines = text.split("\n")

    start = time.perf_counter()
    policy, _ = compile_text(text, URI)
    baseline_check = time.perf_counter() - start
    assert policy is not None
    start = time.perf_counter()
    verify(policy)
    baseline_verify = time.perf_counter() - start

    server = Server()
    ident = server.send("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, request=True)
    server.wait(lambda m: m.get("id") == ident)
    server.send("initialized", {})
    time.sleep(3)  # the worker processes start
    sent = time.perf_counter()
    server.send("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "sealnet", "version": 1,
                                                          "text": text}})
    _, at = server.wait(diagnostics_for(1, False))
    open_checked = at - sent
    _, at = server.wait(diagnostics_for(1, True))
    open_verified = at - sent

    rule_lines = [i for i, line in enumerate(lines) if line.startswith("rule r") and " to d" in line]
    checked, verified, hover_idle, hover_busy = [], [], [], []

    def hover(line: int) -> float:
        character = lines[line].index(" to d") + 4
        ident = server.send("textDocument/hover", {"textDocument": {"uri": URI},
                                                   "position": {"line": line, "character": character}}, request=True)
        sent = time.perf_counter()
        answer, at = server.wait(lambda m: m.get("id") == ident)
        assert answer.get("result"), answer
        return at - sent

    for n in range(edits):
        line = rule_lines[(n * 397 + len(rule_lines) // 2) % len(rule_lines)]
        for _ in range(3):
            hover_idle.append(hover(line))
        old = lines[line]
        lines[line] = old.replace(" allow ", " deny ") if " allow " in old else old.replace(" deny ", " allow ")
        version = n + 2
        sent = time.perf_counter()
        server.send("textDocument/didChange", {"textDocument": {"uri": URI, "version": version},
                                               "contentChanges": [{"text": "\n".join(lines)}]})
        _, at = server.wait(diagnostics_for(version, False))
        checked.append(at - sent)
        hover_busy.append(hover(line))
        _, at = server.wait(diagnostics_for(version, True))
        verified.append(at - sent)
    server.close()
    if os.environ.get("BENCH_LSP_LOG"):
        print("\n".join(server.logs))

    ms = lambda xs: statistics.median(xs) * 1000  # noqa: E731
    print(f"policy: {rules} rules, {len(lines)} lines; {edits} edits (one rule's action each)")
    print(f"baseline in-process: parse+check {baseline_check * 1000:.0f} ms, verify {baseline_verify * 1000:.0f} ms")
    print(f"open: checker diagnostics {open_checked * 1000:.0f} ms, verifier findings {open_verified * 1000:.0f} ms")
    print(f"edit -> checker diagnostics: median {ms(checked):.0f} ms, max {max(checked) * 1000:.0f} ms "
          f"({ms(checked) / (baseline_check * 1000):.2f}x parse+check)")
    print(f"edit -> verifier findings:   median {ms(verified):.0f} ms, max {max(verified) * 1000:.0f} ms "
          f"({ms(verified) / (baseline_verify * 1000):.2f}x verify alone)")
    print(f"hover, idle:                 median {ms(hover_idle):.1f} ms, max {max(hover_idle) * 1000:.1f} ms")
    print(f"hover, while verifying:      median {ms(hover_busy):.1f} ms, max {max(hover_busy) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
