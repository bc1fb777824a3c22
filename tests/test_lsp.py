"""The language server, driven as an editor drives it: JSON-RPC over a pipe."""

from __future__ import annotations

import pytest

pytest.importorskip("pygls")

from lsp_wire import LspProcess  # noqa: E402

BROKEN = """policy "p" version 1
domain a { tee tdx; nodes 198.18.1.0/24 }
rule r1: allow from a to nowhere
"""
CLEAN = """policy "p" version 1
domain a { tee tdx; nodes 198.18.1.0/24 }
rule r1: allow from a to a
"""


def test_language_server_publishes_and_clears_diagnostics() -> None:
    client = LspProcess()
    try:
        ident = client.send("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, request=True)
        init = client.wait(lambda m: m.get("id") == ident, timeout=20)[0]
        assert "capabilities" in init["result"]
        client.send("initialized", {})
        uri = "file:///tmp/broken.policy"
        client.send("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "sealnet", "version": 1, "text": BROKEN}})
        published = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics", timeout=20)[0]
        diags = published["params"]["diagnostics"]
        assert [d["code"] for d in diags] == ["E101"]
        # `nowhere` starts on line 3 (0-based 2), column 26 (0-based 25)
        assert diags[0]["range"]["start"] == {"line": 2, "character": 25}
        assert diags[0]["severity"] == 1

        client.send("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"text": CLEAN}]})
        published = client.wait(lambda m: m.get("method") == "textDocument/publishDiagnostics", timeout=20)[0]
        assert published["params"]["diagnostics"] == []
    finally:
        client.close()
