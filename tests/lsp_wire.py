"""A minimal language-server client over stdio, for the tests and the LSP benchmark."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time


class LspProcess:
    """`policyc lsp` in a child process, spoken to as an editor does: JSON-RPC
    with Content-Length framing over its stdin and stdout; every wait is bounded."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "sealnet.compiler.cli", "lsp"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.buffer = b""
        self.next_id = 1
        self.logs: list[str] = []

    def send(self, method: str, params: dict | None, request: bool = False) -> int | None:
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

    def receive(self, timeout: float) -> dict | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self.buffer.partition(b"\r\n\r\n")
            if sep:
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                if len(rest) >= length:
                    self.buffer = rest[length:]
                    return json.loads(rest[:length])
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                raise EOFError("the server exited")
            self.buffer += chunk

    def wait(self, predicate, timeout: float = 120.0) -> tuple[dict, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is not None and message.get("method") == "window/logMessage":
                self.logs.append(message["params"]["message"])
            if message is not None and predicate(message):
                return message, time.perf_counter()
        raise TimeoutError("no answer")

    def close(self) -> None:
        """Shut the server down as an editor does; kill it if it does not go."""
        try:
            ident = self.send("shutdown", None, request=True)
            self.wait(lambda m: m.get("id") == ident, timeout=30)
            self.send("exit", None)
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
