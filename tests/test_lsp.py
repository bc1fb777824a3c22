"""The language server, driven as an editor drives it: JSON-RPC over a pipe."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

pytest.importorskip("pygls")

BROKEN = """policy "p" version 1
domain a { tee tdx; nodes 198.18.1.0/24 }
rule r1: allow from a to nowhere
"""
CLEAN = """policy "p" version 1
domain a { tee tdx; nodes 198.18.1.0/24 }
rule r1: allow from a to a
"""


class Client:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sealnet.compiler.cli", "lsp"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )
        self.next_id = 1

    def send(self, method: str, params: dict, request: bool = False) -> int | None:
        message: dict = {"jsonrpc": "2.0", "method": method, "params": params}
        ident = None
        if request:
            ident = message["id"] = self.next_id
            self.next_id += 1
        body = json.dumps(message).encode()
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return ident

    def receive(self) -> dict:
        assert self.proc.stdout is not None
        length = 0
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise EOFError("server closed its output")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return json.loads(self.proc.stdout.read(length))

    def wait_for(self, predicate, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive()
            if predicate(message):
                return message
        raise TimeoutError("no matching message")

    def close(self) -> None:
        try:
            ident = self.send("shutdown", {}, request=True)
            self.wait_for(lambda m: m.get("id") == ident, timeout=10)
            self.send("exit", {})
            self.proc.wait(timeout=10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def test_language_server_publishes_and_clears_diagnostics() -> None:
    client = Client()
    try:
        ident = client.send("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, request=True)
        init = client.wait_for(lambda m: m.get("id") == ident)
        assert "capabilities" in init["result"]
        client.send("initialized", {})
        uri = "file:///tmp/broken.policy"
        client.send("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": "sealnet", "version": 1, "text": BROKEN}})
        published = client.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        diags = published["params"]["diagnostics"]
        assert [d["code"] for d in diags] == ["E101"]
        # `nowhere` starts on line 3 (0-based 2), column 26 (0-based 25)
        assert diags[0]["range"]["start"] == {"line": 2, "character": 25}
        assert diags[0]["severity"] == 1

        client.send("textDocument/didChange", {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [{"text": CLEAN}]})
        published = client.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics")
        assert published["params"]["diagnostics"] == []
    finally:
        client.close()
